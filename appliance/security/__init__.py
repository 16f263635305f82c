"""Protection against password guessing and request floods: the throttle, rate limits, client addresses."""
