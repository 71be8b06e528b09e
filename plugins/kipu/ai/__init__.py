"""AI captions: OpenAI-compatible rewriting and hashtags, with hard post-conditions, caching and accounting."""
