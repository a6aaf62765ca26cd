"""The lm_eval runner: lm-eval's evaluator on the backend's model, offline, its data from the task items."""
