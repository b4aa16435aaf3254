//! The console's tools page in a real Chromium: see `tests/console/tools.test.mjs`.
