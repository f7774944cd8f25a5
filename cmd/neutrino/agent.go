package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// agent runs the host agent. This session it registers with the server and
// reports a heartbeat; wiring the host's ports follows (issue 3).
func agent(args []string) error {
	fs := flag.NewFlagSet("agent", flag.ExitOnError)
	host, _ := os.Hostname()
	hostName := fs.String("host", host, "this host's name (binding:host_id of its ports)")
	server := fs.String("server", envOr("NEUTRINO_SERVER", "http://127.0.0.1:9696"), "Neutrino server URL")
	token := fs.String("token", os.Getenv("OS_TOKEN"), "token to use (default: log in with the OS_* variables of an openrc)")
	interval := fs.Duration("report-interval", 30*time.Second, "heartbeat interval")
	once := fs.Bool("once", false, "report once and exit")
	fs.Parse(args)
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a := &agentClient{server: strings.TrimSuffix(*server, "/"), token: *token, hc: &http.Client{Timeout: 15 * time.Second}}
	report := map[string]any{"agent_type": "Neutrino host agent", "binary": "neutrino-agent", "host": *hostName,
		"topic": "N/A", "configurations": map[string]any{"bridge_mappings": map[string]any{}, "tunnel_types": []any{"vxlan"}},
		"start_flag": true}
	for {
		err := a.report(ctx, report)
		switch {
		case err == nil:
			report["start_flag"] = false
			log.Debug("reported", "host", *hostName)
		case ctx.Err() != nil:
			return nil
		default:
			log.Warn("report failed", "err", err)
		}
		if *once {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

type agentClient struct {
	server, token string
	hc            *http.Client
}

var errUnauthorized = errors.New("unauthorized")

func (a *agentClient) report(ctx context.Context, report map[string]any) error {
	for attempt := 0; attempt < 2; attempt++ {
		if a.token == "" {
			t, err := loginFromEnv()
			if err != nil {
				return err
			}
			a.token = t
		}
		err := a.post(ctx, "/neutrino/v1/agents/report", map[string]any{"agent": report})
		if !errors.Is(err, errUnauthorized) {
			return err
		}
		a.token = "" // expired: log in again
	}
	return errUnauthorized
}

func (a *agentClient) post(ctx context.Context, path string, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.server+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", a.token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return errUnauthorized
	case resp.StatusCode >= 300:
		return fmt.Errorf("POST %s: HTTP %d %s", path, resp.StatusCode, data)
	}
	return nil
}
