"""Per-platform caption rules (limits in each platform's own counting) and the offline rewriter."""
