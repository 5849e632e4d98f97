#!/bin/sh
# The packages CI runs this on the installed package with the package name
# and its version (without the release): meshd prints the plain version.

case "$1" in
meshd)
	meshd --version | grep -F "$2"
	;;
esac
