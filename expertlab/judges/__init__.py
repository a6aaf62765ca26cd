"""LLM and deterministic judges of generation reliability (absolute and relative protocols).

- `client`: an OpenAI-compatible chat-completions client built for paid judges: bounded concurrency,
  retries with backoff on timeouts, 429 and 5xx, JSON answers validated (retried, then recorded as
  invalid with the raw text), never coerced;
- `cache`: a content-addressed, append-only verdict cache, so no verdict is paid for twice and a
  killed run resumes;
- `grounding`: the offline deterministic grounding judge (the toy world's default).
"""
