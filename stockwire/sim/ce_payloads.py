"""Commerce Engine's objects as its webhooks carry them under ``data``: ``Order`` (with its ``OrderItem``s,
``AppliedPromotion``s and ``CustomerAddress``es), ``OrderShipment`` and ``OrderReturn`` (each beside the
order's ``order_number``).

Shaped like ``tests/fixtures/commerce_engine/`` (``@commercengine/storefront-sdk`` 0.15.0): every field
the schema marks required is present, null where the schema allows it. Prices, names and addresses are
made up, derived from the SKU or drawn from the run's seed.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from .plan import Line

__all__ = ["customer", "order_document", "order_item", "return_document", "shipment_document", "with_status"]

_CDN = "https://cdn.example-store.in/products"
_TAX_RATE = 18.0
_PEOPLE = (
    ("Asha", "Menon", "9845012345", "Bengaluru", "Karnataka", "560038", "14, 2nd Cross, Indiranagar"),
    ("Rohan", "Iyer", "9820098765", "Mumbai", "Maharashtra", "400050", "7, Hill Road, Bandra West"),
    ("Meera", "Kapoor", "9811122233", "New Delhi", "Delhi", "110017", "B-22, Saket"),
    ("Arjun", "Rao", "9849011122", "Hyderabad", "Telangana", "500034", "Plot 9, Road 12, Banjara Hills"),
    ("Kavya", "Nair", "9847033344", "Kochi", "Kerala", "682020", "31, Panampilly Nagar"),
)


def _price(sku: str) -> float:
    """A stable made-up price per SKU (INR, tax included)."""
    return float(299 + (zlib.crc32(sku.encode()) % 40) * 100)


def _name(identifier: str | None) -> str | None:
    if identifier is None:
        return None
    return identifier.split("_", 1)[-1].replace("-", " ").title()


def _slug(identifier: str) -> str:
    return identifier.split("_", 1)[-1].lower().replace(" ", "-").replace("/", "-")


def _tax(gross: float) -> float:
    return round(gross * _TAX_RATE / (100 + _TAX_RATE), 2)


def order_item(line: Line) -> dict[str, Any]:
    """The ``OrderItem`` of ``line``: ``quantity`` paid units and ``free_quantity`` free ones."""
    product = line.product_id or f"prd_{line.sku}"
    price = _price(line.sku)
    gift = line.qty == 0
    return {
        "product_id": product,
        "product_name": _name(product),
        "product_image_url": f"{_CDN}/{_slug(product)}.jpg",
        "product_type": line.product_type,
        "sku": line.sku,
        "slug": _slug(product),
        "variant_id": line.variant_id,
        "variant_name": _name(line.variant_id),
        "backorder": line.backorder,
        "on_promotion": line.free > 0,
        "on_subscription": False,
        "subscription_plan": None,
        "subscription_interval": None,
        "subscription_frequency": None,
        "quantity": line.qty,
        "free_quantity": line.free,
        "is_free_item": gift,
        "price_including_tax": True,
        "selling_price": 0.0 if gift else price,
        "listing_price": price,
        "selling_price_excluding_tax": 0.0 if gift else round(price - _tax(price), 2),
        "promotion_discount_amount": price * line.free if not gift else 0.0,
        "coupon_discount_amount": 0.0,
        "tax_type": "GST",
        "tax_rate": _TAX_RATE,
        "tax_amount": _tax(price * line.qty),
        "handling_charge_excluding_tax": 0.0,
        "handling_charge_tax_rate": 0.0,
        "handling_charge_including_tax": 0.0,
        "attributes": [],
        "seller_id": None,
        "seller_detail": None,
    }


def _promotion(item: Mapping[str, Any], sequence: int) -> dict[str, Any]:
    gift = item["is_free_item"]
    return {
        "promotion_id": f"promo_{'GIFT' if gift else 'BXGY'}",
        "promotion_type": "free-goods" if gift else "buy-x-get-y",
        "savings": item["listing_price"] * item["free_quantity"],
        "product_id": item["product_id"],
        "variant_id": item["variant_id"],
        "product_name": item["product_name"],
        "variant_name": item["variant_name"],
        "applied_sequence": sequence,
        "scope": "cart" if gift else "item",
    }


def customer(rng: random.Random) -> dict[str, Any]:
    """A ``CustomerAddress`` (billing and shipping alike)."""
    first, last, phone, city, state, pincode, line1 = rng.choice(_PEOPLE)
    return {
        "id": f"addr_{rng.randrange(16**10):010X}",
        "first_name": first,
        "last_name": last,
        "country_code": "+91",
        "phone": phone,
        "email": f"{first}.{last}@example.in".lower(),
        "address_line1": line1,
        "address_line2": None,
        "landmark": None,
        "pincode": pincode,
        "city": city,
        "state": state,
        "country": "India",
        "tax_identification_number": None,
        "business_name": None,
        "is_default_billing": True,
        "is_default_shipping": True,
        "is_phone_verified": True,
        "is_email_verified": True,
        "nickname": None,
    }


def order_document(order_number: str, lines: Iterable[Line], address: Mapping[str, Any], at: str) -> dict[str, Any]:
    """The ``Order`` as placed (``pending``, unpaid); :func:`with_status` gives its later states."""
    items = [order_item(line) for line in lines]
    promotions = [_promotion(item, n) for n, item in enumerate((i for i in items if i["free_quantity"]), 1)]
    subtotal = sum(item["selling_price"] * item["quantity"] for item in items)
    savings = sum(p["savings"] for p in promotions)
    tax = round(sum(item["tax_amount"] for item in items), 2)
    shipping = 0.0 if subtotal >= 999 else 79.0
    total = subtotal + shipping
    return {
        "order_number": order_number,
        "order_date": at,
        "status": "pending",
        "payment_status": "pending",
        "payment_success_date": None,
        "customer_note": None,
        "is_promotion_applied": bool(promotions),
        "promotion_discount_amount": savings,
        "promotion_discount_percent": 0.0,
        "is_coupon_applied": False,
        "coupon_code": None,
        "coupon_discount_amount": 0.0,
        "coupon_discount_percent": 0.0,
        "applied_promotions": promotions,
        "applied_coupons": [],
        "promotion_savings": savings,
        "coupon_savings": 0.0,
        "other_savings": 0.0,
        "total_savings": savings,
        "on_subscription": False,
        "subtotal": subtotal,
        "item_total_tax": tax,
        "subtotal_including_tax": subtotal,
        "shipping_estimated_cost": shipping,
        "shipping_discount_amount": 0.0,
        "shipping_amount": shipping,
        "shipping_tax_rate": _TAX_RATE,
        "shipping_tax_amount": _tax(shipping),
        "shipping_amount_including_tax": shipping,
        "estimated_delivery_days": 5,
        "handling_charge_excluding_tax": 0.0,
        "handling_charge_tax_amount": 0.0,
        "handling_charge_including_tax": 0.0,
        "total_tax": round(tax + _tax(shipping), 2),
        "grand_total": total,
        "loyalty_points_earned": int(total // 100),
        "loyalty_points_redeemed": 0,
        "credit_balance_used": 0,
        "to_be_paid": total,
        "order_items_count": len(items),
        "order_items": items,
        "billing_address": address,
        "shipping_address": address,
        "currency": {"name": "Indian Rupee", "code": "INR", "symbol": "\u20b9"},
        "metadata": {"channel": "web"},
        "is_cancellation_allowed": True,
        "feedback": None,
    }


def with_status(order: Mapping[str, Any], status: str, payment_status: str, paid_at: str | None) -> dict[str, Any]:
    """The same ``Order`` later in its life (its items and addresses are shared, not copied)."""
    return {**order, "status": status, "payment_status": payment_status, "payment_success_date": paid_at}


def _shipment_item(line: Line) -> dict[str, Any]:
    item = order_item(line)
    keep = ("product_id", "product_name", "product_image_url", "variant_id", "variant_name", "sku")
    return {
        **{key: item[key] for key in keep},
        "quantity": line.qty,
        "free_quantity": line.free,
        "is_free_item": item["is_free_item"],
    }


def shipment_document(
    order_number: str, reference: str, status: str, lines: Iterable[Line], awb: str, at: str
) -> dict[str, Any]:
    """The ``OrderShipment`` ``reference`` of the order in ``status``, with ``order_number`` beside it."""
    items = [_shipment_item(line) for line in lines]
    document: dict[str, Any] = {
        "order_number": order_number,
        "reference_number": reference,
        "status": status,
        "total_weight": round(0.4 * sum(item["quantity"] + item["free_quantity"] for item in items), 2),
        "total_boxes": 1,
        "shipment_items_count": len(items),
        "shipment_items": items,
        "shipping_amount": 0.0,
        "shipping_tax_amount": 0.0,
        "shipping_amount_including_tax": 0.0,
        "courier_company_name": "Delhivery",
        "shipping_label_url": f"https://labels.example-store.in/{reference}.pdf",
        "awb_no": awb,
        "tracking_url": f"https://track.example-courier.in/{awb}",
        "eta_delivery": at[:10],
        "is_return_allowed": status == "delivered",
        "created_at": at,
        "modified_at": at,
        "seller_id": None,
        "seller_detail": None,
    }
    if status == "cancelled":
        document["cancellation_reason"] = "Cancelled by customer"
    elif status not in ("unscheduled", "schedule_requested", "scheduled", "packed"):
        document["shipped_date"] = at
        if status == "delivered":
            document["delivered_date"] = at
    return document


def return_document(
    order_number: str, request_number: str, status: str, items: Iterable[tuple[str, Line, int]], at: str
) -> dict[str, Any]:
    """The ``OrderReturn`` ``request_number`` in ``status``: ``items`` are (shipment, line, units back),
    named by product and variant as Commerce Engine names them (never by SKU)."""
    document: dict[str, Any] = {
        "order_number": order_number,
        "request_number": request_number,
        "status": status,
        "created_at": at,
        "modified_at": at,
        "items": [
            {
                "shipment_number": shipment,
                "product_id": line.product_id,
                "product_name": _name(line.product_id),
                "product_image_url": f"{_CDN}/{_slug(line.product_id or line.sku)}.jpg",
                "variant_id": line.variant_id,
                "variant_name": _name(line.variant_id),
                "quantity": units,
                "return_reason": "Size too small",
            }
            for shipment, line, units in items
        ],
    }
    if status in ("approved", "complete"):
        document["approved_at"] = at
    if status == "complete":
        document["received_at"] = at
    return document
