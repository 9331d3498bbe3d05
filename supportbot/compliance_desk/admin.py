"""The compliance officer's admin pages; each page is a module of this package."""
