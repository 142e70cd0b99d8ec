"""Listeners for a proxy that speaks the uwsgi or FastCGI protocol (nginx's uwsgi_pass and
fastcgi_pass): sans-IO parsers that turn its packets into the same request heads and body
events as the HTTP parser (maitred.http.parser), and the framing of responses back."""
