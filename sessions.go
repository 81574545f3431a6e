package tlsmail

import (
	"crypto/tls"
	"runtime"
	"sync"
	"weak"
)

// TLS session resumption. A Dialer used more than once resumes its TLS
// sessions (a TLS 1.3 PSK handshake with a fresh key exchange, so forward
// secrecy holds), which spares the server the certificate signature and
// the client its verification. Client.TLSConnectionState reports it as
// DidResume.
//
// Why one cache per *tls.Config and not one for the process: on
// resumption crypto/tls checks the cached certificate's name and expiry
// but does not verify it again against the RootCAs of the configuration
// in use. A session verified under one configuration (a test CA, say)
// must therefore never be resumed under another. Dialers without a
// TLSConfig all verify against the system roots, so they share one cache.

// defaultSessions serves every Dialer whose TLSConfig is nil.
var defaultSessions = tls.NewLRUClientSessionCache(0)

// configSessions maps a caller's *tls.Config, held weakly, to its cache.
var configSessions sync.Map // weak.Pointer[tls.Config] -> tls.ClientSessionCache

// sessionCache returns the cache for connections made with config, or nil
// when config brings its own ClientSessionCache (which the clone keeps) or
// disables tickets.
func sessionCache(config *tls.Config) tls.ClientSessionCache {
	if config == nil {
		return defaultSessions
	}
	if config.ClientSessionCache != nil || config.SessionTicketsDisabled {
		return nil
	}
	key := weak.Make(config)
	if v, ok := configSessions.Load(key); ok {
		return v.(tls.ClientSessionCache)
	}
	v, loaded := configSessions.LoadOrStore(key, tls.NewLRUClientSessionCache(0))
	if !loaded {
		// The entry goes when the caller's configuration does.
		runtime.AddCleanup(config, func(k weak.Pointer[tls.Config]) { configSessions.Delete(k) }, key)
	}
	return v.(tls.ClientSessionCache)
}

// withSessions returns cfg, a completed clone of base, with base's
// session cache when it has none of its own.
func withSessions(cfg, base *tls.Config) *tls.Config {
	if cfg.ClientSessionCache == nil && !cfg.SessionTicketsDisabled {
		cfg.ClientSessionCache = sessionCache(base)
	}
	return cfg
}
