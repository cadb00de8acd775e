# execd — the two commands a newcomer needs are `make run` and `make test`; each installs
# what is missing first (Debian packages via apt-get, kernels via npm), then builds.
BUILD ?= build
ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Build and test toolchain and libraries (Debian bookworm names).
APT_BUILD := meson ninja-build pkg-config g++ python3 \
	libcpp-httplib-dev nlohmann-json3-dev libzmq3-dev cppzmq-dev libspdlog-dev doctest-dev libssl-dev \
	libre2-dev libarchive-dev libsqlite3-dev libyaml-dev
# What the daemon drives at run time: shells and tools commands expect, and the Python
# kernel (ipykernel) with the libraries users plot and compute with.
APT_RUNTIME := bash bubblewrap procps python3-ipykernel python3-matplotlib python3-numpy python3-pandas
APT_PACKAGES := $(APT_BUILD) $(APT_RUNTIME)
# The reverse proxy's tests talk to a real WebSocket server through it, with a real client.
APT_PACKAGES += python3-websockets python3-websocket
# integration-replicas puts real nginx in front of gateway replicas (deploy/nginx/gateway.conf).
APT_PACKAGES += nginx-light
# The docker backend (docs/IMAGES.md): its tests start a private dockerd and import an
# image holding only a static busybox, which is also the bundle's entrypoint shell.
# integration-docker-network runs dockerd's iptables and the gateway's host firewall in a
# network namespace of its own (iptables, iproute2's ip).
APT_DOCKER := docker.io busybox-static iptables iproute2
APT_PACKAGES += $(APT_DOCKER)
# The Kubernetes backend's schema checks read deploy/k8s's manifests with python3-yaml.
APT_PACKAGES += python3-yaml

# JavaScript/TypeScript kernels: tslab from the npm registry, in a prefix this Makefile
# owns, with their kernelspecs under the checkout too (never the user's global
# ~/.local/share/jupyter, where two checkouts would re-point each other's specs). execd
# finds them through JUPYTER_PATH, which run and test put first (the user's entries after).
TSLAB_VERSION := 1.0.22
TSLAB_DIR := $(CURDIR)/.kernels/tslab
TSLAB_BIN := $(TSLAB_DIR)/node_modules/.bin/tslab
KERNELS_DATA := $(CURDIR)/.kernels/share/jupyter
KERNELSPECS := $(KERNELS_DATA)/kernels
export JUPYTER_PATH := $(KERNELS_DATA)$(if $(JUPYTER_PATH),:$(JUPYTER_PATH))
# TypeScript handlers on /invoke compile with the typescript package tslab brings.
export EXECD_TYPESCRIPT_MODULE ?= $(TSLAB_DIR)/node_modules/@tslab/typescript-for-tslab

# The browser console's terminal (ui/, served at /ui): xterm.js from the npm registry,
# pinned, in a prefix this Makefile owns; meson embeds its files into execd
# (src/api/meson.build reads .ui-vendor/node_modules).
XTERM_VERSION := 5.3.0
XTERM_FIT_VERSION := 0.8.0
UI_VENDOR := $(CURDIR)/.ui-vendor
# The console's test drives a real headless Chromium over the DevTools protocol.
APT_TEST := chromium

.PHONY: all deps packages kernels ui-vendor k8s-schema build run run-gateway test test-sanitize fuzz bench fmt lint clean

all: build

# Everything the daemon and its tests need: Debian packages, then the npm kernels.
deps: packages kernels

# $(call apt_install,PACKAGES,WHO): installs those of PACKAGES that are missing, and only them.
define apt_install
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make $(2): installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

packages:
	$(call apt_install,$(APT_PACKAGES),packages)

kernels: packages
	@if [ ! -x "$(TSLAB_BIN)" ] || [ ! -d "$(TSLAB_DIR)/node_modules/@types/node" ]; then \
	  command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm; }; \
	  echo "make kernels: installing tslab $(TSLAB_VERSION) into $(TSLAB_DIR)"; \
	  npm install --prefix "$(TSLAB_DIR)" --no-audit --no-fund --loglevel=error tslab@$(TSLAB_VERSION) @types/node@20; \
	fi
	@# Both specs must name this checkout's binary, quoted whole (a checkout that was moved
	@# keeps specs naming its old path).
	@if ! { grep -qsF '"$(TSLAB_BIN)"' "$(KERNELSPECS)/tslab/kernel.json" && \
	        grep -qsF '"$(TSLAB_BIN)"' "$(KERNELSPECS)/jslab/kernel.json"; }; then \
	  "$(TSLAB_BIN)" install --python /usr/bin/python3 --binary "$(TSLAB_BIN)" --prefix "$(CURDIR)/.kernels" >/dev/null; \
	fi

ui-vendor:
	@if ! grep -qs '"version": "$(XTERM_VERSION)"' "$(UI_VENDOR)/node_modules/xterm/package.json" || \
	    ! grep -qs '"version": "$(XTERM_FIT_VERSION)"' "$(UI_VENDOR)/node_modules/xterm-addon-fit/package.json"; then \
	  command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm; }; \
	  echo "make ui-vendor: installing xterm $(XTERM_VERSION) and xterm-addon-fit $(XTERM_FIT_VERSION) into $(UI_VENDOR)"; \
	  npm install --prefix "$(UI_VENDOR)" --no-audit --no-fund --loglevel=error \
	    xterm@$(XTERM_VERSION) xterm-addon-fit@$(XTERM_FIT_VERSION); \
	fi

# Kubernetes' object schemas for the Kubernetes backend's tests (docs/KUBERNETES.md): the
# npm package kubernetes-models, in a prefix this Makefile owns. No API server runs here;
# every pod the backend would send and every manifest in deploy/k8s is validated with it.
K8S_SCHEMA := $(CURDIR)/.k8s-schema
# 4.5.1: the newest that supports the Node.js Debian ships (18; 5.x requires 22).
K8S_MODELS_VERSION := 4.5.1
k8s-schema:
	@if ! grep -qs '"version": "$(K8S_MODELS_VERSION)"' "$(K8S_SCHEMA)/node_modules/kubernetes-models/package.json"; then \
	  command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm; }; \
	  echo "make k8s-schema: installing kubernetes-models $(K8S_MODELS_VERSION) into $(K8S_SCHEMA)"; \
	  npm install --prefix "$(K8S_SCHEMA)" --no-audit --no-fund --loglevel=error kubernetes-models@$(K8S_MODELS_VERSION); \
	fi

$(BUILD)/build.ninja: | ui-vendor
	meson setup $(BUILD) -Dwerror=true

build: packages ui-vendor $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build kernels
	./$(BUILD)/execd $(ARGS)

# The control plane on this machine: the process backend (each sandbox an execd in
# bubblewrap), the Lifecycle API on 127.0.0.1:8080 (README, "execd-gateway"). ARGS adds
# flags, e.g. ARGS="--api-key secret --pool host=2".
run-gateway: build
	./$(BUILD)/execd-gateway --backend process $(ARGS)

# meson runs every test executable; summarize.py adds up doctest's per-executable counts
# into the one closing line `N passed, M failed` and fails if anything failed or crashed.
test: build kernels k8s-schema
	$(call apt_install,$(APT_TEST),test)
	@meson test -C $(BUILD) --print-errorlogs --num-processes 2 > $(BUILD)/meson-test.out 2>&1; \
	tail -n 40 $(BUILD)/meson-test.out; \
	python3 tests/summarize.py $(BUILD)/meson-logs/testlog.json

# The whole suite again, built with AddressSanitizer + UndefinedBehaviorSanitizer
# (docs/ARCHITECTURE.md, "Fuzzing and sanitizers"). Daemons under test write their
# reports to $(ASAN_BUILD)/sanitizer-reports (their stderr is only read by the tests), and
# each report from an execd process counts as one more failed case in the closing line.
ASAN_BUILD := build-asan
SANITIZER_REPORTS := $(CURDIR)/$(ASAN_BUILD)/sanitizer-reports
# ASan's quarantine (256 MiB by default) keeps freed memory resident, which the tests'
# bounds on the daemon's RSS would count: a small one keeps those tests meaningful.
SANITIZE_ENV := \
	ASAN_OPTIONS=abort_on_error=1:halt_on_error=1:detect_leaks=1:print_stacktrace=1:log_exe_name=1:log_path=$(SANITIZER_REPORTS)/report:quarantine_size_mb=8:allocator_release_to_os_interval_ms=100 \
	UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_exe_name=1:log_path=$(SANITIZER_REPORTS)/report \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitize/lsan.supp:print_suppressions=0

# GCC's -Wmaybe-uninitialized misfires under the sanitizers' instrumentation (inside
# libstdc++'s <regex>, for one); every other warning stays an error.
$(ASAN_BUILD)/build.ninja: | ui-vendor
	meson setup $(ASAN_BUILD) -Dwerror=true -Dbuildtype=debugoptimized \
	  -Db_sanitize=address,undefined -Db_lundef=false \
	  -Dcpp_args="['-fno-sanitize-recover=all','-Wno-maybe-uninitialized']"

test-sanitize: packages kernels ui-vendor $(ASAN_BUILD)/build.ninja
	$(call apt_install,$(APT_TEST),test-sanitize)
	ninja -C $(ASAN_BUILD)
	@rm -rf $(SANITIZER_REPORTS); mkdir -p $(SANITIZER_REPORTS); \
	$(SANITIZE_ENV) meson test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2 --timeout-multiplier 3 \
	  > $(ASAN_BUILD)/meson-test.out 2>&1; \
	tail -n 40 $(ASAN_BUILD)/meson-test.out; \
	python3 tests/sanitize/summarize.py $(ASAN_BUILD)/meson-logs/testlog.json $(SANITIZER_REPORTS)

# libFuzzer targets (tests/fuzz/), built with clang, ASan and UBSan, each run for
# FUZZ_SECONDS from its seed corpus; a crash, hang or sanitizer report fails.
FUZZ_BUILD := build-fuzz
FUZZ_SECONDS ?= 30
APT_FUZZ := clang libclang-rt-14-dev

fuzz: packages ui-vendor
	$(call apt_install,$(APT_FUZZ),fuzz)
	@test -f $(FUZZ_BUILD)/build.ninja || CXX=clang++ meson setup $(FUZZ_BUILD) -Dfuzz=true -Dbuildtype=debugoptimized \
	  -Db_sanitize=address,undefined -Db_lundef=false -Dcpp_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all'
	ninja -C $(FUZZ_BUILD) fuzz-targets
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_BUILD)

bench: build
	./bench/run.sh $(BUILD)

# A self-contained execd in $(BUILD)/bundle: the binary, its libraries (dlopen'ed ones
# too) and glibc's loader, for images without our libraries (docs/IMAGES.md).
# `make images` builds the base, test and runtime images locally (no registry needed).
.PHONY: bundle images
bundle: build
	tools/make_bundle.sh $(BUILD)/execd $(BUILD)/bundle

images:
	$(call apt_install,docker.io debootstrap busybox-static python3-ipykernel,images)
	tools/make_images.sh

fmt:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

# Layering (docs/ARCHITECTURE.md): HTTP stays in api/ and http/, ZeroMQ in its two files.
lint:
	@! grep -rlE '#include <httplib.h>|#include "http/' src/core src/exec src/process src/isolation src/files src/metrics src/jupyter src/commands src/invoke src/pty || { echo "lint: HTTP below api/"; exit 1; }
	@! grep -rl 'zmq.hpp' src | grep -vE 'jupyter/(kernel_client|wire)\.(c|h)pp' || { echo "lint: zmq outside jupyter/kernel_client and jupyter/wire"; exit 1; }
	@! grep -rl 'openssl/' src | grep -vE 'jupyter/hmac_signer.cpp|invoke/artifact_scan.cpp|http/webhook_sender.cpp|http/tls_client.cpp|http/websocket_frame.cpp|deferred_openssl_init.cpp' || { echo "lint: OpenSSL outside jupyter/hmac_signer.cpp, invoke/artifact_scan.cpp, http/webhook_sender.cpp, http/tls_client.cpp, http/websocket_frame.cpp (and the programs' deferred_openssl_init.cpp)"; exit 1; }
	@! grep -rlE '#include <re2/' src | grep -v 'files/grep_matcher.cpp' || { echo "lint: RE2 outside files/grep_matcher.cpp"; exit 1; }
	@! grep -rlE '#include <archive(_entry)?\.h>' src | grep -vE 'files/archive_(stream|extract|loader)\.cpp' || { echo "lint: libarchive outside files/archive_*"; exit 1; }
	@! grep -rl '#include <zmq.h>' src | grep -v 'jupyter/zmq_loader.cpp' || { echo "lint: libzmq's C API outside jupyter/zmq_loader.cpp"; exit 1; }
	@! grep -rl 'dlopen' src | grep -v 'core/lazy_library.cpp' || { echo "lint: dlopen outside core/lazy_library.cpp"; exit 1; }
	@! grep -rnE '#include (<httplib.h>|"http/)' src/gateway | grep -vE '^src/gateway/(api/|gateway_app\.(c|h)pp|main\.cpp)' | grep -vE '"http/(client|tls_client|upstream_connection).hpp"' || { echo "lint: the gateway's domain (src/gateway outside api/, gateway_app, main) includes HTTP server headers; only the client's (http/client.hpp, tls_client.hpp, upstream_connection.hpp)"; exit 1; }
	@! grep -rl '#include <yaml.h>' src | grep -v 'gateway/backends/kubernetes_config.cpp' || { echo "lint: libyaml outside gateway/backends/kubernetes_config.cpp"; exit 1; }
	@echo "lint: layering ok"

clean:
	rm -rf $(BUILD)
