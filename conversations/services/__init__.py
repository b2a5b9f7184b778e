"""Service functions: the one place where state changes happen. Views and consumers stay thin."""
