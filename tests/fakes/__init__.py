"""Local HTTP fakes of external services, implementing their documented contracts and errors."""
