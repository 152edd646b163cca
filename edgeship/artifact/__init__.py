"""What lives under build/: artifacts and their manifests, the selection of artifacts a command
works on, the bundle pushed to a device, atomic writes. Imports only the ground floor, model/
and the standalone runner (runtimes/)."""
