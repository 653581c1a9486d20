"""Looking at a model: the one scoring definition (scoring), `evaluate`, `visualize` and
the unit features it ranks (features)."""
