"""A live demo center: a demo PBX and simulated colleagues that use the running service
over its own protocols, so a first run shows calls flowing (`callcenter serve --demo`)."""
