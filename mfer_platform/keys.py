"""The platform's shared vocabularies, each written once: the keys a trial's parameters carry and
the metric names every layer (search spaces, store, statistics, tables) agrees on."""
from __future__ import annotations

SEED_KEY = "trainer.seed"
ROW_KEY = "row"  # the grid axis of a space's named rows; a trial's params keep the row's name
TRIAL_INDEX = "__trial_index__"  # set by ray.tune.search.Repeater on each repeat of a suggestion

# What the trainer reports at every epoch for the validation split, and once at the end for test.
VAL_METRICS = ("val_acc", "val_mean_class_acc", "val_macro_f1", "val_loss", "val_compactness")
TEST_METRICS = ("test_acc", "test_mean_class_acc", "test_macro_f1", "test_loss", "test_compactness")
EPOCH_METRICS = ("train_loss", *VAL_METRICS, "lr", "epoch_s", "train_images_per_s", "selected_epoch",
                 "time_total_s")
# The selected epoch's per-class validation result, reported with each epoch that improves the selection.
VAL_PER_CLASS, VAL_CONFUSION = "val_per_class_acc", "val_confusion"
# Metrics a searcher or scheduler may optimise (all reported every epoch).
SEARCH_METRICS = (*VAL_METRICS, "train_loss", "best_val_acc")
# What else a trial reports every epoch that a multi-objective search may trade off against accuracy.
COST_METRICS = ("params", "images_per_s", "epoch_s")

# Every metric a comparison summarises, with the direction that is better. Compactness is
# mfer.metrics.feature_compactness (intra- over inter-class distance of the pooled features):
# lower means tighter classes, the property MFER's feature losses aim at.
METRIC_MODES = {
    "val_acc": "max", "val_mean_class_acc": "max", "val_macro_f1": "max",
    "test_acc": "max", "test_mean_class_acc": "max", "test_macro_f1": "max",
    "val_compactness": "min", "test_compactness": "min",
}
COMPARED_METRICS = tuple(METRIC_MODES)
# Display names of the compared metrics.
PRETTY = {
    "val_acc": "val acc", "val_mean_class_acc": "val mean-class acc", "val_macro_f1": "val macro-F1",
    "test_acc": "test acc", "test_mean_class_acc": "test mean-class acc", "test_macro_f1": "test macro-F1",
    "val_compactness": "val compactness", "test_compactness": "test compactness",
}
# Metrics that are ratios, not fractions: displayed as they are, not as percentages.
RATIOS = frozenset({"val_compactness", "test_compactness"})
