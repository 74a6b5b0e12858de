// libpq, PostgreSQL's reference C client (Debian's libpq-dev), for pg-driver-bench only.
#include <libpq-fe.h>
