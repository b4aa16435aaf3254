//! The console's system page in a real Chromium: see `tests/console/system.test.mjs`.
