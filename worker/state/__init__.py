"""State: key groups, keyed state backends, operator state and serializers."""
