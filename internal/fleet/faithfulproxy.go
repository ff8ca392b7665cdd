package fleet

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// publicDialTimeout bounds the proxy's connection to a private address: a
// security group that drops the SYN shows as this wait, then a closed
// connection to the source.
const publicDialTimeout = 3 * time.Second

// publicProxy plays the Internet between the regions: it listens on every
// instance's public address, on the appliance's ports, and forwards each
// connection to the instance's private address, opened from the public
// address of the instance the connection comes from (so that the
// destination, and its security group, see the source's public address, as
// behind an Internet gateway), each byte held for the one-way delay when
// source and destination lie in different regions.
type publicProxy struct {
	log    *slog.Logger
	source func(addr string) (publicHost, bool)
	// oneWay is the inter-region one-way delay in nanoseconds.
	oneWay atomic.Int64
	// lossPPM is the share of chunks between regions, in parts per
	// million, that are "lost" and arrive a TCP retransmission later.
	lossPPM atomic.Int64

	mu        sync.Mutex
	listeners map[string][]net.Listener // by public address
	conns     map[net.Conn][2]string    // the regions it joins, from and to
	closed    bool
	done      chan struct{} // closed by close
	// cut holds the isolated regions, each with a channel closed when it
	// is healed.
	cut     map[string]chan struct{}
	dialed  map[string]int // "from→to" regions: connections forwarded
	refused map[string]int // "from→to" regions: connections the destination did not accept
}

func newPublicProxy(log *slog.Logger, source func(addr string) (publicHost, bool)) *publicProxy {
	return &publicProxy{log: log.With("component", "public-proxy"), source: source,
		listeners: map[string][]net.Listener{}, conns: map[net.Conn][2]string{},
		dialed: map[string]int{}, refused: map[string]int{}, done: make(chan struct{}), cut: map[string]chan struct{}{}}
}

// listen proxies the appliance's ports of h's public address.
func (p *publicProxy) listen(h publicHost) error {
	var lns []net.Listener
	for _, port := range instancePorts {
		ln, err := net.Listen("tcp", net.JoinHostPort(h.public, strconv.Itoa(port)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("the public proxy of %s: %w", h.id, err)
		}
		lns = append(lns, ln)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		for _, l := range lns {
			l.Close()
		}
		return errors.New("the public proxy is closed")
	}
	p.listeners[h.public] = lns
	p.mu.Unlock()
	for k, ln := range lns {
		go p.serve(ln, h, instancePorts[k])
	}
	return nil
}

// unlisten stops proxying a public address; its connections go on until
// either side closes them.
func (p *publicProxy) unlisten(public string) {
	p.mu.Lock()
	lns := p.listeners[public]
	delete(p.listeners, public)
	p.mu.Unlock()
	for _, l := range lns {
		l.Close()
	}
}

func (p *publicProxy) serve(ln net.Listener, dst publicHost, port int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c, dst, port)
	}
}

// track adds (or with add false removes) a connection between regions
// to those that close and isolate cut.
func (p *publicProxy) track(c net.Conn, regions [2]string, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closed {
			return false
		}
		p.conns[c] = regions
		return true
	}
	delete(p.conns, c)
	return true
}

// isolate cuts region off the Internet, as an outage of the region's
// network: its connections through the proxy end, and new ones, from or
// to it, are held unanswered until heal (packets dropped). Traffic within
// the region, on private addresses, goes on.
func (p *publicProxy) isolate(region string) {
	p.mu.Lock()
	if _, ok := p.cut[region]; !ok {
		p.cut[region] = make(chan struct{})
	}
	var cut []net.Conn
	for c, r := range p.conns {
		if r[0] == region || r[1] == region {
			cut = append(cut, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		c.Close()
	}
	p.log.Info("region isolated", "region", region, "connections_cut", len(cut))
}

// heal ends the isolation of region.
func (p *publicProxy) heal(region string) {
	p.mu.Lock()
	if ch, ok := p.cut[region]; ok {
		close(ch)
		delete(p.cut, region)
	}
	p.mu.Unlock()
	p.log.Info("region healed", "region", region)
}

// isolation is the channel of whichever of two regions is isolated, nil
// if neither is.
func (p *publicProxy) isolation(a, b string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch, ok := p.cut[a]; ok {
		return ch
	}
	return p.cut[b]
}

func (p *publicProxy) forward(in net.Conn, dst publicHost, port int) {
	srcAddr, _, _ := net.SplitHostPort(in.RemoteAddr().String())
	d := net.Dialer{Timeout: publicDialTimeout}
	fromRegion := "outside"
	var delay time.Duration
	var loss float64
	if src, ok := p.source(srcAddr); ok {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src.public)}
		fromRegion = src.region
		if src.region != dst.region {
			delay = time.Duration(p.oneWay.Load())
			loss = float64(p.lossPPM.Load()) / 1e6
		}
	}
	regions := [2]string{fromRegion, dst.region}
	if !p.track(in, regions, true) {
		in.Close()
		return
	}
	defer p.track(in, regions, false)
	defer in.Close()
	if cut := p.isolation(fromRegion, dst.region); cut != nil {
		// Dropped: the source sees a connection that never answers.
		select {
		case <-cut:
		case <-p.done:
		}
		return
	}
	key := fromRegion + "→" + dst.region
	out, err := d.Dial("tcp", net.JoinHostPort(dst.private, strconv.Itoa(port)))
	if err != nil {
		p.mu.Lock()
		p.refused[key]++
		p.mu.Unlock()
		p.log.Debug("connection not accepted", "from", srcAddr, "to", dst.id, "port", port, "err", err)
		return
	}
	if !p.track(out, regions, true) {
		out.Close()
		return
	}
	defer p.track(out, regions, false)
	defer out.Close()
	p.mu.Lock()
	p.dialed[key]++
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); delayedCopy(out, in, delay, loss) }()
	go func() { defer wg.Done(); delayedCopy(in, out, delay, loss) }()
	wg.Wait()
}

// minRTO is Linux's least TCP retransmission timeout.
const minRTO = 200 * time.Millisecond

// retransmission is the extra wait of a chunk that a wire with loss
// loses: a TCP retransmission timeout (the round trip plus minRTO), doubled
// for each retransmission lost again, up to maxRetransmissions; zero for
// a chunk not lost. Sparse traffic such as raft's heartbeats has no later
// segment to trigger a fast retransmit, so a timeout is what a loss costs
// it.
func retransmission(loss float64, oneWay time.Duration) time.Duration {
	var extra time.Duration
	rto := 2*oneWay + minRTO
	for range maxRetransmissions {
		if rand.Float64() >= loss {
			break
		}
		extra += rto
		rto *= 2
	}
	return extra
}

// maxRetransmissions bounds the retransmissions of one lost chunk.
const maxRetransmissions = 6

// delayedCopy copies src to dst, each chunk written delay after it was
// read, in order (a lost chunk holds back those after it, as in TCP), then
// half-closes dst. The delay is the point of the proxy: a wire's latency,
// not a rate limit.
func delayedCopy(dst, src net.Conn, delay time.Duration, loss float64) {
	defer func() {
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	if delay <= 0 {
		_, _ = io.Copy(dst, src)
		return
	}
	type chunk struct {
		b  []byte
		at time.Time
	}
	chunks := make(chan chunk, 4096)
	go func() {
		defer close(chunks)
		var last time.Time
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				at := time.Now().Add(delay + retransmission(loss, delay))
				if at.Before(last) {
					at = last
				}
				last = at
				chunks <- chunk{buf[:n], at}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		if w := time.Until(c.at); w > 0 {
			time.Sleep(w) // the wire's latency
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close() // ends the reader
			for range chunks {
			}
			return
		}
	}
}

// counts returns the connections forwarded and refused, by "from→to"
// regions ("outside" for the root namespace).
func (p *publicProxy) counts() (dialed, refused map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dialed, refused = map[string]int{}, map[string]int{}
	for k, v := range p.dialed {
		dialed[k] = v
	}
	for k, v := range p.refused {
		refused[k] = v
	}
	return dialed, refused
}

// close stops every listener and cuts every connection.
func (p *publicProxy) close() {
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	var all []io.Closer
	for _, lns := range p.listeners {
		for _, l := range lns {
			all = append(all, l)
		}
	}
	for c := range p.conns {
		all = append(all, c)
	}
	p.listeners = map[string][]net.Listener{}
	p.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}
