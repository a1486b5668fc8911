package notify

import (
	"strings"
	"unicode"
)

// The root-cause document's three renderings: markdown (GitHub, GitLab),
// Jira wiki markup (REST API v2) and the Atlassian Document Format (REST
// API v3). Whatever comes from the run goes through an escaper; only our
// own labels, URLs and structure are markup.

// zwsp breaks a mention or a reference (@name, #12, !3) without changing
// how the text looks.
const zwsp = "\u200b"

// refStarts are the characters GitHub and GitLab turn into mentions or
// references when a word follows them: @user, #issue, !merge-request,
// ~label, %milestone, $snippet, &epic.
const refStarts = "@#!~%$&"

func renderMarkdown(doc []block) string {
	var b strings.Builder
	for i, bl := range doc {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch bl.kind {
		case blHeading:
			b.WriteString(strings.Repeat("#", max(1, min(bl.level, 6))) + " " + mdInlines(bl.inl, false) + "\n")
		case blPara:
			b.WriteString(mdInlines(bl.inl, false) + "\n")
		case blList:
			for _, it := range bl.items {
				b.WriteString("- " + mdInlines(it, false) + "\n")
			}
		case blTable:
			b.WriteString("|")
			for _, h := range bl.header {
				b.WriteString(" " + mdEscape(h) + " |")
			}
			b.WriteString("\n|")
			for range bl.header {
				b.WriteString("---|")
			}
			b.WriteByte('\n')
			for _, row := range bl.rows {
				b.WriteString("|")
				for _, c := range row {
					b.WriteString(" " + mdInlines(c, true) + " |")
				}
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

// inlineMarkup renders each kind of inline in one markup language.
type inlineMarkup struct {
	text, code, strong func(string) string
	link               func(text, href string) string
}

func (m inlineMarkup) render(in []inline) string {
	var b strings.Builder
	for _, x := range in {
		switch x.kind {
		case inText:
			b.WriteString(m.text(x.text))
		case inCode:
			b.WriteString(m.code(x.text))
		case inStrong:
			b.WriteString(m.strong(x.text))
		case inLink:
			b.WriteString(m.link(x.text, x.href))
		}
	}
	return b.String()
}

// mdInlines renders inlines as CommonMark/GFM (table: inside a table cell).
func mdInlines(in []inline, table bool) string {
	return inlineMarkup{
		text:   mdEscape,
		code:   func(s string) string { return mdCode(s, table) },
		strong: func(s string) string { return "**" + mdEscape(s) + "**" },
		link:   func(t, h string) string { return "[" + mdEscape(t) + "](" + safeHref(h) + ")" },
	}.render(in)
}

// mdEscape makes s literal text in CommonMark/GFM: one line, every
// character with a markup meaning backslash-escaped, mentions and
// references broken.
func mdEscape(s string) string {
	s = oneLine(s)
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if strings.ContainsRune("\\`*_{}[]<>()#+!|~&$", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
		if strings.ContainsRune(refStarts, r) && i+1 < len(rs) && isWord(rs[i+1]) {
			b.WriteString(zwsp)
		}
	}
	return b.String()
}

// mdCode is s as an inline code span: nothing inside is markup, and
// neither GitHub nor GitLab looks for mentions in code. In a table a pipe
// or a backslash would interfere with the cell syntax: such an identifier
// is escaped text instead.
func mdCode(s string, table bool) string {
	s = oneLine(s)
	if strings.TrimSpace(s) == "" {
		return mdEscape("(none)")
	}
	if table && strings.ContainsAny(s, "|\\") {
		return mdEscape(s)
	}
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || (strings.HasPrefix(s, " ") && strings.HasSuffix(s, " ")) {
		pad = " "
	}
	return fence + pad + s + pad + fence
}

// safeHref percent-encodes what would end a link destination or a wiki
// link early. Hrefs are our own URLs (the dashboard's, checked at
// startup), so this is belt and braces.
func safeHref(h string) string {
	return strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29", "<", "%3C", ">", "%3E", "|", "%7C", "[", "%5B", "]", "%5D",
		"\\", "%5C", "`", "%60", "\"", "%22", "'", "%27", "\n", "", "\r", "").Replace(h)
}

func isWord(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

// renderWiki renders the document as Jira wiki markup (REST API v2
// descriptions).
func renderWiki(doc []block) string {
	var b strings.Builder
	for i, bl := range doc {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch bl.kind {
		case blHeading:
			b.WriteString("h" + string(rune('0'+max(1, min(bl.level, 6)))) + ". " + wikiInlines(bl.inl) + "\n")
		case blPara:
			b.WriteString(wikiInlines(bl.inl) + "\n")
		case blList:
			for _, it := range bl.items {
				b.WriteString("* " + wikiInlines(it) + "\n")
			}
		case blTable:
			b.WriteString("||")
			for _, h := range bl.header {
				b.WriteString(wikiEscape(h) + "||")
			}
			b.WriteByte('\n')
			for _, row := range bl.rows {
				b.WriteString("|")
				for _, c := range row {
					s := wikiInlines(c)
					if strings.TrimSpace(s) == "" {
						s = " "
					}
					b.WriteString(s + "|")
				}
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

// wikiInlines renders inlines as Jira wiki markup.
func wikiInlines(in []inline) string {
	return inlineMarkup{
		text:   wikiEscape,
		code:   func(s string) string { return "{{" + wikiEscape(orNone(s)) + "}}" },
		strong: func(s string) string { return "*" + wikiEscape(s) + "*" },
		link:   func(t, h string) string { return "[" + wikiEscape(t) + "|" + safeHref(h) + "]" },
	}.render(in)
}

// wikiEscape makes s literal text in Jira wiki markup: one line, markup
// characters backslash-escaped. A backslash itself (two of them make a
// line break in wiki markup) becomes U+29F5, which looks the same.
func wikiEscape(s string) string {
	s = oneLine(s)
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteRune('⧵')
		case strings.ContainsRune("*_-+^~?{}[]|!#:;()", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// adfNode is a node of the Atlassian Document Format: the document, a
// block or an inline text.
type adfNode struct {
	Type    string         `json:"type"`
	Version int            `json:"version,omitempty"`
	Attrs   map[string]any `json:"attrs,omitempty"`
	Content []adfNode      `json:"content,omitempty"`
	Text    string         `json:"text,omitempty"`
	Marks   []adfMark      `json:"marks,omitempty"`
}

type adfMark struct {
	Type  string         `json:"type"`
	Attrs map[string]any `json:"attrs,omitempty"`
}

// renderADF renders the document in the Atlassian Document Format (REST
// API v3 descriptions): text is data there, never markup.
func renderADF(doc []block) adfNode {
	root := adfNode{Type: "doc", Version: 1, Content: []adfNode{}}
	for _, bl := range doc {
		switch bl.kind {
		case blHeading:
			root.Content = append(root.Content, adfNode{Type: "heading", Attrs: map[string]any{"level": max(1, min(bl.level, 6))}, Content: adfInlines(bl.inl)})
		case blPara:
			root.Content = append(root.Content, adfPara(bl.inl))
		case blList:
			l := adfNode{Type: "bulletList"}
			for _, it := range bl.items {
				l.Content = append(l.Content, adfNode{Type: "listItem", Content: []adfNode{adfPara(it)}})
			}
			root.Content = append(root.Content, l)
		case blTable:
			t := adfNode{Type: "table"}
			h := adfNode{Type: "tableRow"}
			for _, s := range bl.header {
				h.Content = append(h.Content, adfNode{Type: "tableHeader", Content: []adfNode{adfPara([]inline{txt(s)})}})
			}
			t.Content = append(t.Content, h)
			for _, row := range bl.rows {
				r := adfNode{Type: "tableRow"}
				for _, c := range row {
					r.Content = append(r.Content, adfNode{Type: "tableCell", Content: []adfNode{adfPara(c)}})
				}
				t.Content = append(t.Content, r)
			}
			root.Content = append(root.Content, t)
		}
	}
	return root
}

func adfPara(in []inline) adfNode {
	return adfNode{Type: "paragraph", Content: adfInlines(in)}
}

func adfInlines(in []inline) []adfNode {
	var out []adfNode
	for _, x := range in {
		t := oneLine(x.text)
		if t == "" {
			continue // ADF text nodes must not be empty
		}
		n := adfNode{Type: "text", Text: t}
		switch x.kind {
		case inCode:
			n.Marks = []adfMark{{Type: "code"}}
		case inStrong:
			n.Marks = []adfMark{{Type: "strong"}}
		case inLink:
			n.Marks = []adfMark{{Type: "link", Attrs: map[string]any{"href": x.href}}}
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		out = []adfNode{{Type: "text", Text: "—"}}
	}
	return out
}
