"""`python -m target_monk` runs the target (`python -m target_monk reconcile`: reconcile)."""

from target_monk.commands import main

main()
