//! The console's workflows page in a real Chromium: see `tests/console/workflows.test.mjs`.
