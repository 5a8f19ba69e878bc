"""The sweep's words, defined once: model families, trial statuses and the attribute keys kept
in Optuna studies. Every other module imports them from here; this one imports nothing.

A name is a `Literal` type (for annotations and type checkers) and the tuple of its values
(`typing.get_args`), for validation and iteration, in the order tables list them.
"""
from __future__ import annotations

from typing import Literal, get_args

Family = Literal["hyper", "embedding", "standard"]
FAMILIES: tuple[Family, ...] = get_args(Family)
HYPER: Family = "hyper"
CONDITIONED: tuple[Family, ...] = ("hyper", "embedding")  # the families with a conditioner (f or e)
COMPARED: tuple[Family, ...] = ("embedding", "standard")  # the families whose size is compared with the hypernetwork's

# How a trial ended. The first four come from training and each has a Parquet row; `interrupted`
# is a trial that was running when its driver stopped: it has no row and is queued again.
TrainedStatus = Literal["ok", "pruned", "diverged", "failed"]
Status = Literal[TrainedStatus, "interrupted"]
TRAINED: tuple[TrainedStatus, ...] = get_args(TrainedStatus)
STATUSES: tuple[Status, ...] = (*TRAINED, "interrupted")
OK: TrainedStatus = "ok"
PRUNED: TrainedStatus = "pruned"  # stopped early by the scheduler
DIVERGED: TrainedStatus = "diverged"  # the loss became NaN or infinite
FAILED: TrainedStatus = "failed"  # the trial raised
INTERRUPTED: Status = "interrupted"

# User attributes of a trial in its Optuna study.
STATUS_ATTR = "status"  # one of STATUSES
RESULT_ATTR = "result"  # the trial's RESULT_KEYS, so that its row can be rebuilt from the study alone
RAY_TRIAL_ATTR = "ray_trial_id"  # the Ray Tune trial that trained it
RETRY_OF_ATTR = "retry_of"  # the number of the interrupted trial whose parameters it trains again
RETRIES_ATTR = "retries"  # times Ray Tune restarted it after a failure (set at each restart)

# User attributes of a study.
OWNER_ATTR = "hypersweep.sweep"  # the id of the sweep that created the study
SPACE_ATTR = "hypersweep.space"  # the fingerprint of the space it searches
FOUND_AT_ATTR = "found_at"  # a tabulated replay's study: the trial that found the answer

PENDING_ENV = "TUNE_MAX_PENDING_TRIALS_PG"  # Ray Tune's (documented) limit on trials waiting for a slot
