"""LLM and deterministic judges of generation reliability (absolute and relative protocols).

- `protocols`: the two protocols' prompts, answer validation and verdict resolution (DeepEval's
  HallucinationMetric asked natively; the study's pairwise prompt with md5 A/B positions);
- `registry`: judge backends (grounding, openai, anthropic, gemini) built from params `judges`,
  turning generations into verdict rows of the `judgments` table and accounting for their cost;
- `client`: a chat client for paid judges speaking the OpenAI, Anthropic and Gemini HTTP protocols:
  bounded concurrency, retries with backoff on timeouts, 429 and 5xx, JSON answers validated
  (retried, then recorded as invalid with the raw text), never coerced;
- `cache`: a content-addressed, append-only verdict cache, so no verdict is paid for twice and a
  killed run resumes; processes sharing it claim each prompt before asking it;
- `grounding`: the offline deterministic grounding judge (the toy world's default).
"""
