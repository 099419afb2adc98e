"""`python -m target_monk` runs the target."""

from target_monk.target import TargetMonk

TargetMonk.cli()
