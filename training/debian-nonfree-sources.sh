#!/bin/sh
# Adds Debian's contrib and non-free components, in a sources file of their own, for the corpus's
# RHVoice, Pico and MBROLA voices. One script for `make voices` and the Dockerfile's trainer stage.
# Usage: debian-nonfree-sources.sh [SOURCES_FILE]   (run as root; apt-get update afterwards)
set -eu
target=${1:-/etc/apt/sources.list.d/speechlabel-nonfree.sources}
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$codename" > "$target"
