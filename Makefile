# The two commands of the README:
#   make        installs what is missing, builds, runs the word count example
#   make test   builds and runs every test (ctest)
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build example test sanitize clean

all: example

deps:
	@./scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

example: build
	$(BUILD)/gleam run examples/wordcount.lua

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The test suite again under AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize: deps
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DGLEAM_SANITIZE=ON
	cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) $(BUILD)-asan
