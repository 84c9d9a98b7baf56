# Debian package of mailwarden.
#
#   make deb       build the binary package mailwarden_VERSION_all.deb (plus .buildinfo and
#                  .changes) into DEB_OUT, by default the repository's parent directory, as
#                  dpkg-buildpackage does for its build tree
#   make lintian   run lintian on that package; fails on any error
#
# The build happens on a copy of the sources (with packaging/debian as debian/) in a temporary
# directory, so the repository stays clean. Build dependencies: see
# packaging/debian/control (installed by scripts/bootstrap).

DEB_OUT ?= ..
TMP_ROOT ?= $(or $(TMPDIR),/tmp)
DEB_VERSION := $(shell dpkg-parsechangelog -l packaging/debian/changelog -S Version)
DEB := mailwarden_$(DEB_VERSION)_all.deb
# Build with Debian's own tools and python3, never a virtualenv's.
BUILD_ENV := env -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME PATH=/usr/sbin:/usr/bin:/sbin:/bin
# What the package is built from (the rest of the tree, virtualenvs and caches stay out).
SOURCES := setup.cfg pyproject.toml README.md milter detectors models deploy docs \
	$(wildcard LICENSE* COPYING*)
EXCLUDES := --exclude='*.egg-info' --exclude=__pycache__

.PHONY: deb lintian

deb:
	@dpkg-checkbuilddeps packaging/debian/control
	@set -e; \
	work=$$(mktemp -d "$(TMP_ROOT)/mailwarden-deb.XXXXXX"); \
	trap 'rm -rf "$$work"' EXIT; \
	tree="$$work/mailwarden-$(DEB_VERSION)"; \
	mkdir "$$tree"; \
	tar -cf - $(EXCLUDES) $(SOURCES) | tar -xf - -C "$$tree"; \
	cp -a packaging/debian "$$tree/debian"; \
	(cd "$$tree" && $(BUILD_ENV) dpkg-buildpackage -b -us -uc); \
	mkdir -p "$(DEB_OUT)"; \
	mv "$$work"/mailwarden_$(DEB_VERSION)_* "$(DEB_OUT)/"; \
	echo "built $(DEB_OUT)/$(DEB)"

lintian:
	lintian --fail-on error --display-info --show-overrides "$(DEB_OUT)/$(DEB)"
