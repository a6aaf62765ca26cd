"""LLM and deterministic judges of generation reliability (absolute and relative protocols).

- `protocols`: the two protocols' prompts, answer reading and verdict resolution (DeepEval's
  HallucinationMetric imported from the installed deepeval: its template, answer reading, score and pass
  rule; the study's pairwise prompt with md5 A/B positions);
- `registry`: judge backends by name (grounding, and one per provider), built from params `judges`;
- `backend`: what a backend is given and gives back: judged items, run settings, verdict rows of the
  `judgments` table and the tally of their cost;
- `llm`: the LLM judge, asking each distinct prompt once through the verdict cache;
- `client`: a chat client for paid judges: bounded concurrency, retries with backoff on timeouts,
  429 and 5xx, JSON answers validated (retried, then recorded as invalid with the raw text), never coerced;
- `connection`: one HTTP request to an endpoint, bounded by one deadline, its failures classified;
- `providers`: the OpenAI, Anthropic and Gemini HTTP protocols: URL, key, request body, answer text, usage;
- `outcomes`: requests, how each ended, and their cache records;
- `cache`: a content-addressed, append-only verdict cache, so no verdict is paid for twice and a
  killed run resumes; processes sharing it claim each prompt before asking it;
- `grounding`: the offline deterministic grounding judge (the toy world's default).
"""
