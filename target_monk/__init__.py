"""target-monk: a Singer target that delivers usage events to Monk."""
