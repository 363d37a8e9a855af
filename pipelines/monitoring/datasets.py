"""The data sets statistics are kept for, by name: a model version's baseline (`statistics.pb` in its
folder) and each night's (kept with its run). Apart from `statistics` so that a command's --help can
list them without importing Beam."""

TRAINING, EVAL_SCORES = "training", "eval_scores"
NIGHT, NIGHT_SCORES = "night", "night_scores"
DATASETS = (NIGHT, NIGHT_SCORES, TRAINING, EVAL_SCORES)  # in the order a night's run keeps them
