"""The poll engine: find due sources, fetch them concurrently in the triggerer, record new items exactly once."""
