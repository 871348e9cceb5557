"""RIPE Atlas: normalise results (sagan), client (cousteau), stream, stand-in, closed loop, signals."""
