//! The console's agents page in a real Chromium: see `tests/console/agents.test.mjs`.
