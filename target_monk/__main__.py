"""`python -m target_monk` runs the target (`python -m target_monk reconcile`: reconcile)."""

from target_monk.cli import main

main()
