"""intvit: vision transformers compiled to integer-only TVM libraries."""

from intvit.deploy.threads import use_physical_cores

# Before TVM's thread pool starts: one thread per physical core (TVM's own default halves the
# logical CPUs on x86, one thread on this project's 2-core host). See intvit.deploy.threads.
use_physical_cores()
