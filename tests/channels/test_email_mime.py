"""A customer's raw email as the channel layer sees it: the sender, the new text only, the
thread's Message-IDs, the attachments (big ones without their bytes), and what is ignored."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage

import pytest

from conversations.channels.base import Ignored, InboundMessage
from conversations.channels.email_mime import ATTACHMENT_MAX_BYTES, inbound_item

SUPPORT = "support@shop.example"


def _email(text: str = "Hello", **headers: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = headers.pop("From", "Jane Doe <Jane.Doe@Customer.Example>")
    email["To"] = SUPPORT
    email["Subject"] = headers.pop("Subject", "Order 1234")
    for name, value in headers.items():
        email[name.replace("_", "-")] = value
    email.set_content(text)
    return email


def _item(email: EmailMessage, max_chars: int = 4000) -> InboundMessage:
    item = inbound_item(email.as_bytes(), own_address=SUPPORT, max_chars=max_chars)
    assert isinstance(item, InboundMessage)
    return item


def test_sender_subject_and_thread_refs():
    email = _email(
        "Where is it?",
        Message_ID="<m3@customer.example>",
        In_Reply_To="<m2@shop.example>",
        References="<m1@customer.example> <m2@shop.example>",
    )

    item = _item(email)

    assert item.user_id == "jane.doe@customer.example"
    assert item.email == "jane.doe@customer.example"
    assert item.user_name == "Jane Doe"
    assert item.subject == "Order 1234"
    assert item.event_id == "<m3@customer.example>"
    assert item.provider_ref == "<m3@customer.example>"
    assert item.refs == ("<m2@shop.example>", "<m1@customer.example>")
    assert item.thread == "<m1@customer.example>"
    assert item.text == "Where is it?"


def test_a_new_email_is_a_thread_of_its_own():
    item = _item(_email(Message_ID="<new@customer.example>"))

    assert item.thread == "<new@customer.example>"
    assert item.refs == ()


def test_without_a_message_id_the_event_is_the_raw_message_hash():
    email = _email("No id here")
    raw = email.as_bytes()

    item = inbound_item(raw, own_address=SUPPORT, max_chars=4000)

    assert item.event_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_quoted_history_and_signature_are_stripped():
    text = (
        "The parcel arrived damaged, can I get a replacement?\n"
        "\n"
        "Kind regards,\n"
        "Jane Doe\n"
        "Head of Purchasing, Example Ltd\n"
        "\n"
        "On Tue, 1 Dec 2026 at 09:00, Shop Support <support@shop.example> wrote:\n"
        "> Your parcel was sent today.\n"
        "> Tracking number 123.\n"
    )

    item = _item(_email(text, Message_ID="<q@customer.example>"))

    assert item.text == "The parcel arrived damaged, can I get a replacement?"


def test_html_only_is_read_as_text():
    email = EmailMessage()
    email["From"] = "jane@customer.example"
    email["Subject"] = "Help"
    html = "<html><body><p>I need <b>help</b> with my invoice.</p></body></html>"
    email.set_content(html, "html")

    item = _item(email)

    assert "I need **help** with my invoice." in item.text
    assert "<p>" not in item.text


def test_text_is_capped_and_an_empty_body_uses_the_subject():
    assert len(_item(_email("x" * 500), max_chars=100).text) == 100
    assert _item(_email("", Subject="Refund please")).text == "Refund please"
    only_files = _email("", Subject="")
    only_files.add_attachment(b"x", maintype="image", subtype="jpeg", filename="receipt.jpg")
    assert _item(only_files).text == "(attachments: receipt.jpg)"


def test_attachments_are_kept_and_big_ones_as_metadata_only():
    email = _email("See attached.")
    email.add_attachment(
        b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    email.add_attachment(
        b"\x89PNG" + b"0" * (ATTACHMENT_MAX_BYTES + 1),
        maintype="image",
        subtype="png",
        filename="photo.png",
    )

    item = _item(email)

    pdf, photo = item.attachments
    assert (pdf.kind, pdf.filename, pdf.content_type) == ("file", "invoice.pdf", "application/pdf")
    assert pdf.content == b"%PDF-1.4 invoice"
    assert pdf.size == len(b"%PDF-1.4 invoice")
    assert (photo.kind, photo.filename) == ("image", "photo.png")
    assert photo.size == ATTACHMENT_MAX_BYTES + 5
    assert photo.content == b""
    assert item.text == "See attached."


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Auto_Submitted": "auto-generated"}, "auto-submitted"),
        ({"Precedence": "junk"}, "bulk precedence"),
        ({"Precedence": "list"}, "bulk precedence"),
        ({"X_Autorespond": "1"}, "auto-reply"),
        ({"Return_Path": "<>"}, "null return path"),
        ({"From": "Mail Delivery Subsystem <MAILER-DAEMON@mx.example>"}, "mailer daemon"),
        ({"From": "Support <Support@Shop.Example>"}, "own address"),
    ],
)
def test_mail_that_must_not_be_answered_is_ignored(headers, reason):
    item = inbound_item(_email(**headers).as_bytes(), own_address=SUPPORT, max_chars=4000)

    assert isinstance(item, Ignored)
    assert item.reason == reason


def test_auto_submitted_no_is_a_person_writing():
    assert isinstance(_item(_email(Auto_Submitted="no")), InboundMessage)
