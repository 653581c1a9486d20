"""Looking at a model: the one scoring definition (scoring), `evaluate` and its dynamic
evaluation (dynamic), `visualize` and the unit features it ranks (features), and what a
sample shares with the training text (novelty)."""
