"""Instructions, build arguments and a target → the Graph of steps the solver walks."""
