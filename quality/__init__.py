"""Quality evaluations of recorded calls: forms, scoring, evaluations with the agent's
acknowledgement or dispute, sampling calls to evaluate, statistics, recording playback."""
