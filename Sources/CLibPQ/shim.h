/* libpq, the PostgreSQL client library (Debian libpq-dev). */
#include <libpq-fe.h>
