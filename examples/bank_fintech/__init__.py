"""Bank (active, labels) + fintech (passive) vertical FL on FATE's default_credit data."""
