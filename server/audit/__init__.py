"""The tamper-evident audit log: who did what to which evidence, when, from where."""
