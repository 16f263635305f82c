"""The Textual console (`portico tui`, `portico init`): talks to the admin API only."""
