package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromiumEnv names the Chromium binary the browser tests drive. .ci/run
// sets it, and the test then fails, not skips, if it cannot run it.
const chromiumEnv = "TASKSTATUS_CHROMIUM"

// screenshots is where TestDashboardBrowser saves the README's screenshots
// of the dashboard; "" saves none (make screenshots sets it).
var screenshots = flag.String("docservice.screenshots", "", "directory to save screenshots of the dashboard in")

// browserTimeout bounds each step of a browser test that waits for the
// page: loading it, or seeing a change the service makes.
const browserTimeout = 30 * time.Second

// newBrowser starts a headless Chromium for t, or skips t if chromiumEnv
// is not set, and returns the context of a tab in it. The browser is
// stopped when t ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv(chromiumEnv)
	if path == "" {
		t.Skipf("%s is not set: no browser to test with (.ci/run sets it)", chromiumEnv)
	}
	_, err := exec.LookPath(path)
	require.NoError(t, err, "%s=%s", chromiumEnv, path)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.WindowSize(1200, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		require.NoError(t, chromedp.Cancel(ctx), "stop the browser")
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser: it must not have a deadline.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")), "start the browser")
	return ctx
}

// pageErrors collects what the pages of a browser tab report as errors:
// uncaught exceptions and errors logged, such as resources refused by the
// Content-Security-Policy.
type pageErrors struct {
	mu   sync.Mutex
	errs []string
}

// listen starts collecting the errors of the tab ctx.
func (p *pageErrors) listen(ctx context.Context, t *testing.T) {
	t.Helper()
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				msg = fmt.Sprintf("%s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if msg != "" {
			p.mu.Lock()
			p.errs = append(p.errs, msg)
			p.mu.Unlock()
		}
	}))
}

// all returns the errors collected so far.
func (p *pageErrors) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.errs)
}

// browse runs actions in the browser tab ctx, each within browserTimeout.
func browse(ctx context.Context, t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	for i, a := range actions {
		actx, cancel := context.WithTimeout(ctx, browserTimeout)
		err := chromedp.Do(actx, a)
		cancel()
		require.NoError(t, err, "%s: action %d", what, i)
	}
}

// read runs a in the browser tab ctx within browserTimeout, and returns
// its value.
func read[T any](ctx context.Context, t *testing.T, what string, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	require.NoError(t, err, what)
	return v
}

// TestDashboardBrowser drives the dashboard in a real browser as an
// operator would: it finds the failed documents, opens one and sees its
// timeline and error, watches a running one change without a reload, and
// cancels one and sees it canceled.
func TestDashboardBrowser(t *testing.T) {
	ctx := newBrowser(t)
	var errs pageErrors
	errs.listen(ctx, t)
	svc := startService(t, 10, time.Second) // about 30 s a document, 3 s its first step
	for _, id := range []string{"doc-f1", "doc-f2"} {
		resp := submit(t, svc.url, request(t, id, map[string]any{"simulate_failure": stepFileNode}), "")
		await(t, svc.url+resp["status_url"].(string), ended)
	}

	// The list, filtered to the failed documents with the form.
	browse(ctx, t, "filter the failed documents",
		chromedp.Navigate(svc.url+"/dashboard/"),
		chromedp.WaitVisible(`table.tasks`),
		chromedp.SetValue(`select[name="status"]`, "failed"),
		chromedp.Click(`form.filter button[type="submit"]`),
		chromedp.WaitVisible(`form.filter a[href="./"]`), // Clear: the filtered page

	)
	ids := read(ctx, t, "the listed documents",
		chromedp.Evaluate[[]string](`[...document.querySelectorAll('table.tasks a[href^="tasks/"]')].map(a => a.textContent)`))
	assert.Equal(t, []string{"doc-f2", "doc-f1"}, ids)
	assertLabeled(ctx, t)
	screenshot(ctx, t, "dashboard-list.png")

	// A failed document's page: its error and its timeline.
	browse(ctx, t, "open a failed document",
		chromedp.Click(`table.tasks a[href="tasks/doc-f1"]`),
		chromedp.WaitVisible(`.error .message`),
	)
	assert.Equal(t, "File node creation failed: Connection refused", read(ctx, t, "the error", chromedp.Text(`.error .message`)))
	assert.Equal(t, 1, read(ctx, t, "the failed step's bar",
		chromedp.Evaluate[int](`document.querySelectorAll('table.steps svg.bar rect.st-failed').length`)))
	assertLabeled(ctx, t)
	screenshot(ctx, t, "dashboard-task.png")

	// A running document's page follows it without a reload: a marker
	// set on the loaded page is still there when the page shows a newer
	// version.
	submit(t, svc.url, request(t, "doc-ok", nil), "")
	browse(ctx, t, "open a running document",
		chromedp.Navigate(svc.url+"/dashboard/tasks/doc-ok"),
		chromedp.WaitVisible(`#task`),
	)
	version := read(ctx, t, "the page's version", chromedp.AttributeValue(`#task`, "data-version"))
	require.True(t, version.Exists)
	read(ctx, t, "mark the page", chromedp.Evaluate[bool](`window.notReloaded = true`))
	read(ctx, t, "see it change", chromedp.Poll[bool](
		fmt.Sprintf(`document.getElementById("task").dataset.version !== %q`, version.Value),
		chromedp.WithPollingTimeout(browserTimeout)))
	assert.True(t, read(ctx, t, "the marker", chromedp.Evaluate[bool](`window.notReloaded === true`)),
		"the page changed without a reload")

	// The cancel button: the page shows the document canceled once its
	// work has stopped.
	browse(ctx, t, "cancel it",
		chromedp.SendKeys(`input[name="reason"]`, "wrong file"),
		chromedp.Click(`#cancel`),
		chromedp.WaitVisible(`.summary .st-canceled`),
	)
	assert.Equal(t, "canceled", read(ctx, t, "the status", chromedp.Text(`.summary .status`)))
	assert.Equal(t, "wrong file", svc.get(t, "doc-ok").CancelReason)

	assert.Empty(t, errs.all(), "errors the pages reported")

	// With JavaScript off, the pages are whole.
	_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	require.NoError(t, err)
	browse(ctx, t, "read with JavaScript off",
		chromedp.Navigate(svc.url+"/dashboard/?status=failed"),
		chromedp.WaitVisible(`table.tasks a[href="tasks/doc-f2"]`),
		chromedp.Navigate(svc.url+"/dashboard/tasks/doc-f2"),
		chromedp.WaitVisible(`.error .message`),
		chromedp.WaitVisible(`#retry`),
	)
}

// assertLabeled checks that every control of the page in the browser tab
// ctx has a label that names it, or a name of its own, for screen readers.
func assertLabeled(ctx context.Context, t *testing.T) {
	t.Helper()
	unlabeled := read(ctx, t, "the controls without a label", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("input, select, button, progress")]
			.filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim())
			.map(e => e.outerHTML)`))
	assert.Empty(t, unlabeled)
}

// screenshot saves the page in the browser tab ctx as name in the
// screenshots directory, if one is set.
func screenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	png := read(ctx, t, "screenshot "+name, chromedp.FullScreenshot(100))
	require.NoError(t, os.WriteFile(filepath.Join(*screenshots, name), png, 0o644))
}
