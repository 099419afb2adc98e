"""What target-monk's tests, demo and benchmarks run against: a strict Monk emulator
(`emulator`) and throwaway PostgreSQL clusters (`postgres`). The target never imports
this package."""
