"""channel-notifier: availability from the INVENTORY stream out to every sales channel, in order, signed."""
