"""Platform hooks: one module per platform on a shared interface (list new posts, publish once)."""
