"""newsdesk: news-article analysis service (shared core: settings, store, CLI)."""
