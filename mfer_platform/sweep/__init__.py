"""From a search-space file to trials on Ray Tune: spaces (YAML -> validated SearchSpace), plan (Ray Tune
objects), cost and capacity (what a sweep will take and where it fits), runner (launch/resume/extend),
trainable (one trial = one ``mfer.train.fit``), progress (the live table), faults (chaos drills).
Never imports ``results``: the two meet only in ``layout`` and ``overrides`` below them."""
