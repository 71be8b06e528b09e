"""What Facebook, Instagram and Threads share: the Graph API base (errors, long-lived tokens, containers) and the
signed webhooks. Not a platform itself: it declares no ``PLATFORM``."""
