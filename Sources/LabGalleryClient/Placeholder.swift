// placeholder: the client library lands with its issue
