"""The built-in generator: content-aware negative prompts from a curated vocabulary, with no weights.

:class:`BuiltinGenerator` is what :class:`~negopt.NegOptPipeline` and ``negopt generate`` use when no model is named.
It reads the prompt with precompiled word-boundary patterns -- what it shows (people, faces, hands, full bodies,
animals, text and signs, landscapes, architecture, vehicles, food, products) and how it is rendered (photo, painting,
illustration, anime, 3D render, pixel art, sketch, black and white) -- and composes a negative prompt from the defect
terms that fit, most important first, deduplicated and within a token budget. It is deterministic, pure Python
(standard library and :mod:`negopt.text` only) and takes well under a millisecond a prompt.

It never puts into the negative what the prompt asks for: "a blurry long-exposure photo of traffic" gets no
"blurry", "a cartoon cat" no "cartoon", "a black and white photo" no "monochrome". Two rules enforce this:

1. *Concepts*: a table of concepts, each with the phrasings that ask for it in a prompt (blur: "blur", "bokeh",
   "long exposure", "out of focus", "depth of field", ...; monochrome: "black and white", "b&w", "grayscale",
   "noir", "charcoal", ...) and the negative terms that contradict it. A concept the prompt asks for removes all of
   its terms.
2. *Direct*: a term whose words all occur in the prompt (ignoring case, plurals and function words) is removed, so
   "a bad guy with a long neck" loses "long neck" even though no concept names it.

A negated mention does not ask: "a sharp photo, no blur" keeps "blurry", and "an empty street, no people" gets no
anatomy terms. Negation covers the next one to three words (``no``, ``not``, ``without``, ``never``, ...).
Text-bearing objects (signs, posters, logos, quoted words) always count as asking for text, negated or not, because
"a no parking sign" still shows text.

Where the vocabulary comes from:
    Curated by hand from negative prompts that the Stable Diffusion community has shared widely since 2022; nothing
    here is computed from a data set. The universal quality terms and the anatomy terms come from two lists that
    circulated widely and that many community negatives build on: the anime-model default ("lowres, bad anatomy, bad
    hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal
    quality, jpeg artifacts, signature, watermark, username, blurry") and the Stable Diffusion 1.x list passed around
    with AUTOMATIC1111's web UI ("tiling, poorly drawn hands, poorly drawn feet, poorly drawn face, out of frame,
    extra limbs, disfigured, deformed, body out of frame, bad anatomy, watermark, signature, cut off, low contrast,
    underexposed, overexposed, bad art, beginner, amateur, distorted face"). Negative Prompts DB
    (``mikeogezi/negopt_full``), which NegOpt trains on, collects negatives that Playground AI users wrote in this
    community style; we did not count term frequencies in it and claim no statistics about it. The subject-specific
    terms for vehicles, food, architecture, products and pixel art, and the style-conflict lists, are our own,
    written in the same style. Users add or remove terms with ``extra_terms`` and ``exclude_terms``.

Content filtering is not its job: it adds no "nsfw" or similar terms; pass them in ``extra_terms`` if you want them.
"""

from __future__ import annotations

import logging
import random
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from negopt.text import dedupe_terms, fit_terms, join_terms, split_terms, term_key

__all__ = ["BuiltinGenerator", "BuiltinAnalysis", "approx_clip_tokens"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- vocabulary
def _split(spec: str) -> list[str]:
    return [item.strip() for item in spec.split(",") if item.strip()]


def _words(spec: str) -> str:
    """A word-boundary regex over comma-separated alternatives (regex fragments), each allowing a plural ``s``/``es``.

    A space in an alternative matches any run of spaces or hyphens (or none): "black and white" also matches
    "black-and-white".
    """
    body = "|".join(a.replace(" ", r"[\s-]*") for a in _split(spec))
    return rf"\b(?:{body})(?:e?s)?\b"


def _exact(spec: str) -> str:
    """A regex that matches a whole term key equal to one of the comma-separated ``spec``."""
    return r"^(?:" + "|".join(re.escape(t) for t in _split(spec)) + r")$"


@dataclass(frozen=True)
class _Group:
    """Terms added when ``pattern`` matches the prompt; the first ``core`` of them rank above the rest.

    ``context`` words count only beside a group named in ``requires`` ("holding" means hands for "a woman holding a
    cup", not for "a vase holding flowers").
    """

    name: str
    pattern: re.Pattern[str]
    terms: tuple[str, ...]
    core: int
    context: re.Pattern[str] | None = None
    requires: tuple[str, ...] = ()


def _group(
    name: str, pattern: str, terms: str, core: int, context: str | None = None, requires: tuple[str, ...] = ()
) -> _Group:
    return _Group(
        name,
        re.compile(pattern),
        tuple(_split(terms)),
        core,
        None if context is None else re.compile(context),
        requires,
    )


_PERSON = _words(
    r"person, people, man, men, woman, women, girl, boy, \dgirl, \dboy, child, children, kid, baby, "
    "babies, toddler, teen, teenager, lady, ladies, guy, gentleman, gentlemen, human, humanoid, "
    "crowd, couple, family, families, friend, mother, father, mom, dad, grandmother, grandfather, "
    "grandma, grandpa, bride, groom, wife, husband, daughter, son, sister, brother, soldier, "
    "knight, warrior, king, queen, princess, prince, wizard, witch, sorcer(?:er|ess), elf, elves, "
    "nurse, doctor, chef, cook, farmer, fisherman, fishermen, dancer, athlete, player, fashion "
    "model, actor, actress, businessman, businesswoman, student, teacher, worker, astronaut, "
    "samurai, ninja, cowboy, cowgirl, pirate, monk, priest, nun, policeman, police officer, "
    "firefighter, musician, guitarist, singer, drummer, pianist, painter, scientist, surfer, "
    "skater, skateboarder, hiker, climber, runner, boxer, wrestler, ballerina, geisha, viking, "
    "gladiator, superhero, villain, detective, cyborg, android, vampire, zombie, character, selfie, "
    "he, she, him, his, her, self-portrait, headshot"
)
_FACE = _words(
    r"portrait, self-portrait, headshot, (?<!clock\s)(?<!cliff\s)(?<!rock\s)(?<!watch\s)face, "
    "facial, close-?up of (?:a|an|the) (?:man|woman|girl|boy|person), eye, eyes, smile, smiling, "
    "lips, freckle, expression, selfie, beard, makeup, mugshot, bust, profile picture, avatar, head "
    "and shoulders"
)
_HANDS = _words(
    r"(?<!clock\s)(?<!second\s)(?<!hour\s)(?<!minute\s)hand, hands, finger, fingers, fist, palm, "
    "manicure, handshake, shaking hands, hand in hand, thumbs? up, sign language, peace sign"
)
_HANDS_CONTEXT = _words(
    "holding, holds, hold, grip, gripping, grasp, grasping, waving, clapping, pointing, nails, "
    "gloves?, praying, typing, writing, knitting, sewing, juggling, playing (?:the "
    ")?(?:piano|guitar|violin|cello|drums|flute|harp|cards|chess)"
)
_FULL_BODY = _words(
    "full body, full-body, full-length, full length, whole body, head to toe, legs, barefoot, yoga, "
    "ballet, posing, pose"
)
_FULL_BODY_CONTEXT = _words(
    "standing, walking, running, jumping, dancing, sitting, kneeling, squatting, lying, leg, foot, "
    "feet, shoes?, boots?, sneakers?, fashion, outfit, dress, suit, athletic, figure"
)
_ANIMAL = _words(
    "animal, pet, dog, dogs, puppy, puppies, cat, kitten, kitty, horse, pony, ponies, foal, bird, "
    "fish, lion, lioness, tiger, bear, wolf, wolves, fox, deer, rabbit, bunny, bunnies, hare, cow, "
    "cattle, bull, ox, oxen, pig, piglet, sheep, lamb, goat, elephant, giraffe, zebra, monkey, ape, "
    "gorilla, chimpanzee, orangutan, panda, koala, owl, eagle, hawk, falcon, parrot, duck, goose, "
    "geese, swan, chicken, hen, rooster, penguin, dolphin, whale, shark, seal, otter, beaver, "
    "snake, lizard, gecko, iguana, frog, toad, turtle, tortoise, crocodile, alligator, dinosaur, "
    "butterfly, butterflies, bee, insect, beetle, ant, dragonfly, dragonflies, squirrel, mouse, "
    "mice, rat, hamster, guinea pig, raccoon, hedgehog, camel, llama, alpaca, kangaroo, bat, crow, "
    "raven, pigeon, sparrow, robin, hummingbird, flamingo, peacock, leopard, cheetah, jaguar, puma, "
    "cougar, panther, lynx, donkey, mule, moose, elk, reindeer, bison, buffalo, buffaloes, rhino, "
    "rhinoceros, hippo, hippopotamus, sloth, corgi, labrador, retriever, poodle, husky, huskies, "
    "bulldog, terrier, shiba, dragon, unicorn, griffin, gryphon, phoenix, pegasus, creature, "
    "spider, octopus, crab, lobster, jellyfish, snail, scorpion, moth, ladybug, wildlife"
)
_TEXT_OBJECTS = _words(
    "sign, signs, signboard, signage, poster, billboard, logo, logotype, label, banner, book cover, "
    "album cover, magazine cover, magazine, newspaper, headline, menu, t-?shirt design, speech "
    "bubble, comic strip, storefront, shop front, license plate, neon sign, street sign, "
    "typography, lettering, calligraphy, graffiti, font, caption, title card, meme, infographic, "
    "flyer, greeting card, business card, wordmark, monogram, text, word, words, letter, letters, "
    "quote, slogan, says, saying, reads, written, inscription, inscribed"
)
_LANDSCAPE = _words(
    "landscape, mountain, mountains, forest, woods, lake, river, ocean, sea, seascape, beach, "
    r"shore, coast, coastline, sky, skies, sunset, sunrise, dawn, dusk, (?<!depth\sof\s)field, "
    "meadow, valley, desert, canyon, waterfall, hill, countryside, nature, island, jungle, "
    "rainforest, glacier, volcano, snowy, cloud, clouds, scenery, vista, horizon, cliff, prairie, "
    "tundra, aurora, northern lights, savanna, savannah, wilderness, fjord, lagoon, reef, "
    "grassland, orchard, vineyard, garden, park, trees, pine, starry sky, night sky, milky way, "
    "harbou?r, pier, marina, bay, outdoors"
)
_ARCHITECTURE = _words(
    "building, house, architecture, architectural, skyscraper, tower, castle, church, cathedral, "
    "temple, mosque, pagoda, bridge, city, cities, cityscape, street, skyline, interior, room, "
    "kitchen, bedroom, living room, bathroom, office, hallway, corridor, facade, palace, mansion, "
    "cabin, cottage, villa, apartment, library, libraries, museum, lobby, staircase, stairs, ruins, "
    "village, town, downtown, alley, alleyway, plaza, courtyard, lighthouse, windmill, barn, "
    "warehouse, factory, factories, station, cafe, restaurant, shop, storefront, hotel, arch, dome, "
    "column, pillar, window, balcony, rooftop, skyscrapers, metropolis, urban"
)
_VEHICLE = _words(
    "car, truck, bus, buses, motorcycle, motorbike, bicycle, bike, train, locomotive, tram, subway, "
    r"airplane, aeroplane, plane, aircraft, jet(?![\s-]*black), helicopter, boat, ship, yacht, "
    r"sailboat, vehicle, van(?![\s-]*gogh), jeep, suv, tractor, spaceship, spacecraft, starship, "
    "rocket, race car, racecar, sports car, supercar, sedan, pickup, scooter, taxi, taxis, "
    "ambulance, submarine, traffic, porsche, ferrari, lamborghini, mustang, convertible, limousine, "
    r"(?<!fish\s)tank, canoe, kayak, carriage, wagon, mech, hot rod"
)
_FOOD = _words(
    "food, dish, dishes, meal, burger, hamburger, pizza, pasta, spaghetti, sushi, cake, dessert, "
    "bread, salad, soup, fruit, apple, banana, strawberry, strawberries, "
    r"cherr(?:y|ies)(?![\s-]*blossom), coffee, latte, cappuccino, espresso, tea, drink, cocktail, "
    "wine, beer, breakfast, brunch, lunch, dinner, steak, noodle, ramen, sandwich, sandwiches, "
    "cookie, chocolate, ice cream, donut, doughnut, pie, cuisine, vegetable, taco, burrito, curry, "
    "curries, cheese, egg, pancake, croissant, cupcake, dumpling, bakery, bakeries, pastry, "
    "pastries, smoothie, juice, barbecue, bbq, grilled, roast, feast, buffet, charcuterie, food "
    "photography, plated, gourmet"
)
_PRODUCT = _words(
    "product, product shot, product photo, product photography, packshot, bottle, perfume, watch, "
    r"wristwatch, sneaker, handbag, purse, jewelry, jewellery, (?<!boxing\s)ring, necklace, "
    "earrings, headphones, earbuds, smartphone, phone, laptop, packaging, package design, cosmetic, "
    "lipstick, skincare, studio shot, e-commerce, ecommerce, advertisement, advert, commercial, "
    "mockup, catalog, catalogue, gadget, sunglasses"
)

# Subjects: what the prompt shows. Order sets priority when several match (people's defects are the most visible).
_SUBJECTS: tuple[_Group, ...] = (
    _group(
        "face",
        _FACE,
        (
            "poorly drawn face, disfigured face, asymmetric eyes, cross-eyed, deformed iris, bad teeth, "
            "distorted face, skin blemishes, plastic skin, extra eyes"
        ),
        core=3,
    ),
    _group(
        "people",
        _PERSON,
        (
            "bad anatomy, deformed, disfigured, extra limbs, bad proportions, malformed limbs, missing "
            "limbs, long neck, mutated, cloned face, extra heads"
        ),
        core=3,
    ),
    _group(
        "hands",
        _HANDS,
        (
            "bad hands, extra fingers, missing fingers, fused fingers, deformed hands, poorly drawn hands, "
            "too many fingers, mutated hands"
        ),
        core=3,
        context=_HANDS_CONTEXT,
        requires=("people",),
    ),
    _group(
        "full_body",
        _FULL_BODY,
        (
            "bad proportions, extra legs, extra arms, poorly drawn feet, body out of frame, malformed feet, "
            "cut off feet"
        ),
        core=2,
        context=_FULL_BODY_CONTEXT,
        requires=("people",),
    ),
    _group(
        "animal",
        _ANIMAL,
        (
            "bad anatomy, extra legs, extra limbs, missing legs, extra heads, deformed paws, extra tails, "
            "fused limbs, mutated"
        ),
        core=3,
    ),
    _group(
        "text",
        _TEXT_OBJECTS + r"|[\"“][^\"”]{1,60}[\"”]",
        (
            "misspelled text, garbled letters, illegible text, gibberish text, bad typography, distorted "
            "letters, blurry text"
        ),
        core=3,
    ),
    _group(
        "architecture",
        _ARCHITECTURE,
        (
            "distorted perspective, warped lines, crooked walls, bad perspective, floating objects, "
            "impossible geometry, cluttered"
        ),
        core=2,
    ),
    _group(
        "vehicle",
        _VEHICLE,
        ("deformed wheels, extra wheels, distorted proportions, warped body panels, bad perspective, floating"),
        core=2,
    ),
    _group(
        "food",
        _FOOD,
        "unappetizing, rotten, moldy, burnt, unnatural colors, artificial looking, messy plating",
        core=2,
    ),
    _group(
        "product",
        _PRODUCT,
        ("distorted shape, warped, smudges, fingerprints, dust, scratches, cluttered background, uneven lighting"),
        core=2,
    ),
    _group(
        "landscape",
        _LANDSCAPE,
        (
            "tilted horizon, overexposed sky, oversaturated, washed out, flat lighting, muddy colors, "
            "chromatic aberration"
        ),
        core=2,
    ),
)

_PHOTO = _words(
    "photo, photos, photograph, photography, photographic, photoreal, photorealistic, photorealism, "
    "realistic, realism, hyperrealistic, hyper-realistic, hyperrealism, lifelike, life-like, real "
    r"life, dslr, raw photo, snapshot, film still, movie still, cinematic still, polaroid, \d\d\d? "
    r"?mm, f/\d+(?:\.\d+)?, canon, nikon, sony a7, leica, hasselblad, fujifilm, kodak, portra, "
    "ektar, ilford, iphone photo, national geographic, street photography, bokeh, long exposure, "
    "shot on, documentary, paparazzi, candid, photojournalism, headshot, selfie"
)
_PAINTING = _words(
    "painting, paintings, painted, painterly, oil on canvas, oil painting, watercolou?r, acrylic, "
    "gouache, impasto, fresco, tempera, brush ?strokes?, canvas, impressionis[mt], "
    "expressionis[mt], baroque, renaissance painting, old master, van gogh, monet, rembrandt, "
    "klimt, ukiyo-?e, sumi-?e, chinese painting, ink wash"
)
_ILLUSTRATION = _words(
    "illustration, illustrated, drawing, drawn, digital art, digital painting, concept art, "
    "artwork, vector, vector art, flat design, flat illustration, storybook, children's book, "
    "picture book, comic, comic book, graphic novel, cartoon, cartoonish, toon, clip ?art, sticker, "
    "icon, emoji, caricature, artstation, fantasy art, book illustration, tarot card, mascot, "
    "disney, pixar, looney tunes"
)
_ANIME = _words(
    "anime, manga, waifu, chibi, studio ghibli, ghibli, makoto shinkai, cel ?shad(?:ed|ing), visual "
    "novel, kawaii, shoujo, shounen, shonen, shojo, isekai, genshin, vtuber, light novel, danbooru"
)
_RENDER_3D = _words(
    "3d, 3-d, 3d render, render, rendered, rendering, cgi, cg, octane, octane render, unreal "
    "engine, unreal, blender, cinema ?4d, c4d, vray, v-ray, redshift, ray ?trac(?:ed|ing), path "
    r"traced, low[\s-]?poly, voxel, zbrush, sculpt, isometric, claymation, clay render, keyshot, "
    "subsurface scattering, pbr, game asset"
)
_PIXEL = _words(
    r"pixel art, pixel-art, pixelart, pixelated, pixel, 8[\s-]?bit, 16[\s-]?bit, 32[\s-]?bit, "
    "sprite, sprite sheet, retro game, nes, snes, gameboy, game boy, dithered, dithering"
)
_SKETCH = _words(
    "sketch, sketches, sketched, sketchy, line art, lineart, line drawing, pencil, charcoal, "
    "graphite, ink drawing, ink sketch, ink illustration, pen and ink, doodle, etching, engraving, "
    "woodcut, linocut, crosshatch(?:ed|ing)?, stippling, blueprint, technical drawing, croquis, "
    "gesture drawing, storyboard"
)
_MONO = _words(
    "black and white, black-and-white, b&w, b/w, monochrome, monochromatic, grayscale, greyscale, "
    "noir, film noir, sepia, duotone, desaturated, silver gelatin, tintype, daguerreotype, "
    r"charcoal, graphite, (?<!colored\s)(?<!coloured\s)pencil sketch, ink drawing, pen and ink, "
    "sumi-?e, ink wash, etching, engraving, woodcut, linocut, silhouette"
)

# Styles: how the prompt is rendered. The first ``core`` terms are the style conflicts (what a different style would
# bring); the rest are the style's own typical defects.
_STYLES: tuple[_Group, ...] = (
    _group(
        "photo",
        _PHOTO,
        (
            "cartoon, anime, painting, illustration, 3d render, cgi, drawing, sketch, overexposed, "
            "underexposed, low contrast, oversaturated, noise"
        ),
        core=5,
    ),
    _group(
        "anime",
        _ANIME,
        (
            "photorealistic, realistic, photo, 3d, 3d render, extra digit, fewer digits, error, normal "
            "quality, username, lowres"
        ),
        core=4,
    ),
    _group(
        "painting",
        _PAINTING,
        ("photo, photorealistic, 3d render, cgi, muddy colors, bad art, amateur, beginner, overworked"),
        core=3,
    ),
    _group(
        "illustration",
        _ILLUSTRATION,
        ("photo, photorealistic, 3d render, bad art, amateur, messy lines, sloppy linework, beginner"),
        core=3,
    ),
    _group(
        "render_3d",
        _RENDER_3D,
        ("2d, flat, sketch, painting, drawing, low poly, aliasing, jagged edges, bad textures, stretched textures"),
        core=3,
    ),
    _group(
        "pixel_art",
        _PIXEL,
        (
            "anti-aliasing, smooth gradients, soft edges, photorealistic, 3d render, painting, inconsistent "
            "pixel size, mixed resolution, noisy"
        ),
        core=4,
    ),
    _group(
        "sketch",
        _SKETCH,
        "photo, photorealistic, 3d render, color, messy lines, smudged, uneven lines, eraser marks",
        core=3,
    ),
    _group(
        "monochrome",
        _MONO,
        "color cast, color tint, muddy tones, low contrast",
        core=2,
    ),
)

_CORE = ("worst quality", "low quality", "blurry", "jpeg artifacts")
_MARKS = ("watermark", "signature", "text", "logo")
_EXTRAS = tuple(
    _split(
        "lowres, deformed, distorted, ugly, bad composition, out of frame, cropped, duplicate, poorly "
        "drawn, monochrome, grainy, artifacts, tiling, oversaturated, bad art"
    )
)


# ----------------------------------------------------------------------------------------------- token estimate
def _vocabulary_words() -> set[str]:
    """Every word (letter run) of every term the generator can output on its own."""
    terms = [*_CORE, *_MARKS, *_EXTRAS, *(t for g in (*_SUBJECTS, *_STYLES) for t in g.terms)]
    return {w for t in terms for w in _LETTERS.findall(t.lower())}


def _word_table(table: dict[int, str]) -> dict[str, int]:
    return {word: n for n, words in table.items() for word in words.split()}


_LETTERS = re.compile(r"[^\W\d_]+")
# CLIP's pre-tokenizer splits text into letter runs, single digits and runs of other symbols. These are the CLIP BPE
# token counts of the letter runs of our vocabulary, measured with scripts/clip_word_counts.py (the CLIP tokenizer of
# Stable Diffusion); a test checks that the table covers the vocabulary.
_CLIP_WORD_TOKENS = _word_table(
    {
        1: (
            "amateur anatomy anime anti arms art artifacts artificial background bad beginner blurry body "
            "burnt cartoon cast cgi chromatic color colors composition contrast crooked cropped cross cut d "
            "digit digits drawing drawn dust edges error extra eyed eyes face feet fewer fingers flat "
            "floating frame fused geometry hands heads horizon illustration impossible iris legs letters "
            "lighting limbs lines logo long looking low many marks messy missing mixed monochrome muddy neck "
            "noise noisy normal objects of off out painting panels paws perspective photo pixel plastic "
            "plating poly poorly proportions quality realistic render resolution rotten scratches shape "
            "signature size sketch skin sky sloppy smooth soft stretched tails teeth text textures tint tones "
            "too typography ugly uneven username walls warped washed wheels worst "
        ),
        2: (
            "aberration aliasing asymmetric cloned cluttered deformed disfigured distorted duplicate eraser "
            "fingerprints garbled grainy inconsistent jagged jpeg linework lowres malformed misspelled moldy "
            "mutated overworked photorealistic smudged smudges tiling tilted unnatural watermark "
        ),
        3: ("blemishes gibberish gradients illegible overexposed oversaturated unappetizing underexposed "),
    }
)
_PRETOKEN = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")


def approx_clip_tokens(text: str) -> int:
    """The number of CLIP tokens of ``text`` (no start or end token), without a tokenizer.

    Exact for the built-in vocabulary, whose words' CLIP token counts are tabled. Another word counts one token per
    4 letters (at least one), which errs high for most English words; each digit and each other symbol counts one,
    which is exact for digits and errs high for runs of symbols such as ``),``. Pass a real tokenizer's counter to
    :class:`BuiltinGenerator` (``count_tokens``) to budget exactly for other words.

    Example:
        >>> approx_clip_tokens("worst quality, low quality")
        5
    """
    n = 0
    for piece in _PRETOKEN.findall(text.lower()):
        if piece.isalpha():
            n += _CLIP_WORD_TOKENS.get(piece) or max(1, (len(piece) + 2) // 4)
        else:
            n += 1
    return n


@dataclass(frozen=True)
class _Concept:
    """Something a prompt can ask for (``asks``, on the prompt) and the terms that contradict it (``drops``).

    ``negatable`` concepts are looked up in the prompt with negated phrases removed ("no blur" does not ask for
    blur); the others in the whole prompt.
    """

    name: str
    asks: re.Pattern[str]
    drops: re.Pattern[str]
    negatable: bool = True


def _concept(name: str, asks: str, drops: str, negatable: bool = True) -> _Concept:
    return _Concept(name, re.compile(asks), re.compile(drops), negatable)


_CONCEPTS: tuple[_Concept, ...] = (
    _concept(
        "blur",
        _words(
            "blur, blurry, blurred, blurring, motion blur, long exposure, long-exposure, bokeh, out of "
            "focus, out-of-focus, soft focus, defocused, unfocused, depth of field, dof, tilt-shift, tilt "
            "shift, light trails, light painting, dreamy, hazy, haze, fuzzy, soft-focus, gaussian, smeared, "
            "ghosting, vhs, cctv, lomo(?:graphy)?"
        ),
        r"blur|out of focus|soft focus|bokeh|depth of field|\bfuzzy\b|smudged|soft edges",
    ),
    _concept(
        "grain",
        _words(
            "grain, grainy, film grain, noise, noisy, analog, analogue, film photo, film photograph, film "
            "photography, film still, on film, 35 ?mm film, 35 ?mm, kodak, portra, ektar, ilford, fujifilm, "
            "cinestill, polaroid, lomo(?:graphy)?, disposable camera, vintage photo, old photo, vhs, cctv, "
            "security camera, webcam, found footage, static, high iso, dithered, dithering, stippling, "
            "risograph, halftone"
        ),
        r"grain|\bnois[ey]\b|\bnoise\b|dither",
    ),
    _concept(
        "low_quality",
        _words(
            "low quality, low-quality, bad quality, worst quality, lowres, low res, low resolution, lo-fi, "
            "lofi, vhs, cctv, security camera, webcam, found footage, jpeg, jpg, compressed, compression "
            r"artifacts, deep[\s-]?fried, glitch, glitchy, glitch art, datamosh(?:ing)?, corrupted, early "
            "internet, old internet, ms paint"
        ),
        r"^(?:worst quality|low quality|normal quality|bad quality|lowres|low resolution|jpeg artifacts|artifacts"
        r"|compression artifacts|error|noise|noisy|grainy|pixelated)$",
    ),
    _concept(
        "pixel",
        _PIXEL + "|" + _words(r"low[\s-]?res, lowres, low resolution, retro video game, arcade"),
        _exact("pixelated, pixel art, lowres, low resolution, 8-bit, jagged edges, aliasing"),
    ),
    _concept(
        "monochrome",
        _MONO,
        _exact(
            "monochrome, black and white, grayscale, greyscale, desaturated, b&w, colorless, oversaturated, "
            "unnatural colors, muddy colors, color, washed out"
        ),
    ),
    _concept(
        "muted",
        _words(
            "desaturated, muted, muted colou?rs, pastel, pastels, washed out, washed-out, faded, bleached, "
            "low saturation, dull, matte, earth tones, vintage, retro"
        ),
        _exact("desaturated, washed out, dull colors, muted colors, faded, low saturation"),
    ),
    _concept(
        "saturated",
        _words(
            "saturated, oversaturated, over-saturated, hypersaturated, psychedelic, neon, vivid, vibrant, "
            "fluorescent, day-?glo, trippy, technicolor, pop art"
        ),
        _exact("oversaturated, saturated, unnatural colors, garish"),
    ),
    _concept(
        "dark",
        _words(
            r"dark, darkness, night, nighttime, night time, midnight, low[\s-]?light, dimly lit, dim, moody, "
            "noir, chiaroscuro, shadow, shadowy, silhouette, silhouetted, candlelit, candle light, "
            r"candlelight, moonlit, moonlight, low[\s-]?key, gothic, unlit, starry, night sky, "
            "astrophotography, milky way, underexposed, blackout, cave, dungeon"
        ),
        _exact("underexposed, too dark, dark, dim, low light, low contrast, flat lighting"),
    ),
    _concept(
        "bright",
        _words(
            r"overexposed, over-exposed, high[\s-]?key, blown out, blown-out, bloom, glowing, glow, bright "
            "white, white background, ethereal, sun flare, lens flare, harsh sunlight, backlit, backlight, "
            "light leak, light leaks"
        ),
        _exact("overexposed, overexposed sky, too bright, washed out, lens flare, blown highlights"),
    ),
    _concept(
        "low_contrast",
        _words(
            "low contrast, low-contrast, fog, foggy, mist, misty, haze, hazy, smoke, smoky, smokey, "
            "atmospheric, overcast, dusty, murky, ethereal, dreamy, faded, soft light"
        ),
        _exact("low contrast, hazy, foggy, washed out, flat lighting"),
    ),
    _concept(
        "text",
        _words(
            "text, word, words, letter, letters, lettering, caption, captioned, writing, written, "
            "typography, typographic, font, calligraphy, title, headline, quote, slogan, says, saying, that "
            "reads, inscription, alphabet, handwriting, handwritten, subtitles?, watermarked"
        ),
        _exact("text, words, letters, lettering, writing, caption, captions, typography, font, username, artist name"),
    ),
    _concept(
        "text_object",
        _TEXT_OBJECTS + r"|[\"“][^\"”]{1,60}[\"”]",
        _exact("text, words, letters, lettering, writing, caption, captions, typography, font"),
        negatable=False,
    ),
    _concept(
        "logo",
        _words(
            "logo, logotype, emblem, brand, branding, badge, crest, insignia, wordmark, monogram, "
            "trademark, coat of arms, mascot"
        ),
        _exact("logo, logos, brand, branding"),
        negatable=False,
    ),
    _concept(
        "signature",
        _words("signature, signed, autograph, autographed, signing"),
        _exact("signature, artist name, username"),
    ),
    _concept(
        "watermark",
        _words("watermark, watermarked, stamp, stamped, postage stamp"),
        _exact("watermark"),
    ),
    _concept(
        "cartoon",
        _words(
            "cartoon, cartoons, cartoonish, cartoony, toon, comic, comics, comic book, caricature, chibi, "
            "disney, pixar, looney tunes, animated, animation, mascot, kawaii, anime"
        ),
        _exact("cartoon, cartoonish, toon, comic, caricature"),
    ),
    _concept("anime", _ANIME, _exact("anime, manga, 2d, cel shading, cel shaded")),
    _concept(
        "painting",
        _PAINTING,
        _exact(
            "painting, oil painting, watercolor, watercolour, brush strokes, brushstrokes, painterly, "
            "canvas, canvas texture, digital painting"
        ),
    ),
    _concept(
        "illustration",
        _ILLUSTRATION + "|" + _SKETCH,
        _exact(
            "illustration, drawing, digital art, concept art, vector art, clipart, clip art, 2d, flat, "
            "comic, doodle, artwork, sketch, line art, lineart"
        ),
    ),
    _concept(
        "sketch",
        _SKETCH + "|" + _words("rough, unfinished, wip, work in progress, loose, gestural, scribble"),
        _exact(
            "sketch, unfinished, rough, messy lines, sloppy linework, uneven lines, eraser marks, line art, "
            "lineart, drawing, smudged, color"
        ),
    ),
    _concept(
        "photo",
        _PHOTO,
        _exact("photo, photograph, photography, photorealistic, realistic, realism, hyperrealistic, real life"),
    ),
    _concept(
        "render_3d",
        _RENDER_3D,
        _exact("3d, 3d render, render, cgi, cg, octane render, unreal engine, blender"),
    ),
    _concept(
        "low_poly",
        _words(r"low[\s-]?poly, polygonal, faceted, ps1, psx, n64"),
        _exact("low poly"),
    ),
    _concept(
        "flat",
        _words(
            "flat, flat design, flat colou?rs?, flat shading, 2d, minimalist, minimalism, vector, paper "
            "cut, papercut, silhouette, cel ?shad(?:ed|ing), limited palette"
        ),
        _exact("2d, flat, flat shading, flat lighting, flat colors, smooth gradients"),
    ),
    _concept(
        "framing",
        _words(
            "close-?up, extreme close-?up, closeup, macro, cropped, crop, cut off, partial, headshot, bust, "
            "detail shot, out of frame, half body, upper body, waist up, portrait crop"
        ),
        _exact("cropped, cut off, out of frame, body out of frame, cut off feet, cropped head"),
    ),
    _concept(
        "repetition",
        _words(
            "twins?, triplets, clones?, cloned, duplicate, duplicates, duplicated, pattern, patterns, "
            "seamless, tiled, tileable, tiling, tile, wallpaper, texture, repeated, repeating, mirror, "
            "mirrored, reflection, reflections, symmetr(?:y|ical), kaleidoscope, collage, grid, army, "
            "swarm, identical"
        ),
        _exact("duplicate, cloned face, tiling, mirrored"),
    ),
    _concept(
        "surreal",
        _words(
            "surreal, surrealism, surrealist, dali, abstract, distorted, distortion, warped, warping, "
            "melting, melted, cubism, cubist, escher, impossible, glitch, glitchy, psychedelic, trippy, "
            "dreamlike, liquid, twisted, fractal, non-euclidean, picasso, deformed, deformation, stretched, "
            "morphing, optical illusion, datamosh(?:ing)?"
        ),
        _exact(
            "distorted, warped, deformed, bad proportions, gross proportions, distorted perspective, warped "
            "lines, impossible geometry, distorted proportions, distorted shape, warped body panels, "
            "distorted face, distorted letters, melting"
        ),
    ),
    _concept(
        "lens",
        _words(
            r"fish-?eye, fisheye, wide[\s-]?angle, ultra[\s-]?wide, 360, panoram(?:a|ic), equirectangular, "
            "anamorphic, dutch angle, tilted, worm's eye, bird's eye"
        ),
        _exact(
            "distorted perspective, lens distortion, chromatic aberration, tilted horizon, warped lines, "
            "bad perspective"
        ),
    ),
    _concept(
        "ugly",
        _words(
            "ugly, ugliest, grotesque, hideous, gross, disgusting, monster, monstrous, zombie, horror, "
            "horrific, creepy, gore, gory, goblin, troll, orc, ghoul, demon, undead, corpse, rotting, "
            "decay, decaying, scary, eldritch, lovecraftian"
        ),
        _exact(
            "ugly, gross, grotesque, hideous, disgusting, gross proportions, disfigured, disfigured face, "
            "rotten, moldy"
        ),
    ),
    _concept(
        "many_parts",
        r"\b(?:two|three|four|five|six|seven|eight|nine|ten|multiple|many|extra|\d+)[\s-]+"
        r"(?:heads?|headed|faces?|faced|tails?|tailed)\b"
        r"|\b(?:three|four|five|six|seven|eight|nine|ten|multiple|many|extra|\d+)[\s-]+"
        r"(?:arms?|armed|legs?|legged|eyes?|eyed|limbs?|limbed|hands?|handed|wings?|winged|fingers?|fingered)\b"
        r"|"
        + _words(
            "mutant, mutants, mutated, mutation, monster, creature, eldritch, tentacle, tentacled, octopus, "
            "octopi, squid, kraken, spider, tarantula, centipede, millipede, hydra, cerberus, cyclops, "
            "conjoined, chimera, centaur, naga, multi-?armed, multi-?headed, many-?armed, many-?legged, "
            "shiva, durga, asura, hecatoncheires"
        ),
        r"^(?:extra|too many|multiple) (?:limbs?|arms?|legs?|heads?|eyes?|tails?|fingers?|digits?|hands?)$"
        r"|^(?:mutated|mutant|mutation|mutated hands|malformed limbs|fused limbs|fused fingers|fewer digits"
        r"|extra digit|cloned face|deformed)$",
    ),
    _concept(
        "missing_parts",
        _words(
            "amputee, one-?armed, one-?legged, armless, legless, missing (?:an? )?(?:arm|leg|hand|eye), "
            "prosthetic, prosthesis, wheelchair, eyepatch, one-?eyed, cyclops, venus de milo, statue, bust, "
            "torso, headless"
        ),
        r"^(?:missing|fewer) (?:limbs?|arms?|legs?|fingers?|digits?|hands?|eyes?)$|^(?:fewer digits|cropped head)$",
    ),
    _concept(
        "skin_detail",
        _words(
            "freckles?, freckled, acne, blemish(?:es)?, scars?, scarred, pimples?, pockmarks?, weathered, "
            "wrinkles?, wrinkled, wrinkly, elderly, aged, old, tattoos?, tattooed, pores, skin texture, "
            "moles?, birthmark, vitiligo, sunburn"
        ),
        _exact("skin blemishes, skin spots, acne, bad skin, plastic skin, airbrushed"),
    ),
    _concept(
        "weathered",
        _words(
            "dust, dusty, scratch(?:ed|es|y)?, worn, weathered, grunge, grungy, rust, rusty, rusted, "
            "distressed, antique, patina, smudged?, smudges, dirty, dirt, grime, grimy, abandoned, decay, "
            "decaying, derelict, post-apocalyptic, fingerprints?"
        ),
        _exact("dust, scratches, smudges, fingerprints, dirty, stains, smudged"),
    ),
    _concept(
        "clutter",
        _words(
            "clutter, cluttered, messy, busy, crowded, chaotic, chaos, hoard(?:er|ing)?, maximalis[mt], "
            "packed, overflowing, jumble, untidy, disorganized, junk, junkyard, flea market, bazaar"
        ),
        _exact("cluttered, cluttered background, messy, busy background, messy plating"),
    ),
    _concept(
        "floating",
        _words(
            "floating, levitating, levitation, flying, hovering, suspended, zero gravity, weightless, in "
            "mid-?air, midair, airborne, space"
        ),
        _exact("floating, floating objects, floating vehicle, floating limbs"),
    ),
    _concept(
        "food_decay",
        _words(
            "rotten, rotting, moldy, mouldy, mold, mould, spoiled, burnt, burned, charred, decay, decaying, "
            "leftovers, compost"
        ),
        _exact("rotten, moldy, burnt, unappetizing"),
    ),
    _concept(
        "anti_aliasing",
        _words("anti-?alias(?:ed|ing)?, smooth, smooth gradients?, gradients?, soft"),
        _exact("anti-aliasing, smooth gradients, soft edges"),
    ),
    _concept(
        "amateur",
        _words(
            "amateur, amateurish, beginner, child's drawing, childlike, child-like, naive art, naive, "
            "outsider art, crayon, kid's drawing, kids drawing, ms paint, crude, bad art, badly drawn, "
            "poorly drawn, low effort, scribble, scribbles"
        ),
        _exact("amateur, beginner, bad art, poorly drawn, messy lines, sloppy linework, uneven lines"),
    ),
    _concept(
        "color",
        _words(
            "colou?r, colou?red, colou?rful, colou?rs, colou?rized, watercolou?r, polychrom(?:e|atic), "
            "rainbow, hues?, tinted, tint, vibrant, vivid, multicolou?red, technicolor, splash of colou?r"
        ),
        _exact("color, colors, colour, colour cast, color cast, color tint"),
    ),
    _concept(
        "plastic",
        _words(
            "plastic, toy, toys, doll, dolls, figurine, lego, action figure, barbie, vinyl, funko, "
            "mannequin, porcelain, wax, waxwork, airbrushed, glossy skin"
        ),
        _exact("plastic skin, plastic, doll, airbrushed, artificial looking, 3d render, cgi"),
    ),
    _concept(
        "perspective",
        _words(
            "isometric, orthographic, forced perspective, tilted, crooked, leaning, slanted, askew, wonky, "
            "lopsided, asymmetric, asymmetrical"
        ),
        _exact(
            "crooked walls, tilted horizon, bad perspective, distorted perspective, asymmetric eyes, asymmetric wheels"
        ),
    ),
)

# Negation: "no", "not", "without", ... and up to three words after it, stopping at a preposition or conjunction.
_NEGATION = re.compile(
    r"\b(?:no|not|without|never|non|zero|avoid|avoiding|lacking|free\s+of)\b[\s-]*"
    r"(?:(?!(?:and|but|with|while|in|on|at|of|under|near|by|from|for|to|as|is|are|that|which|behind|over)\b)"
    r"[\w'&/]+[\s-]*){1,3}"
)
_TERM_WORD = re.compile(r"[^\W_]+")
# Function words ignored by the direct rule; the defect words ("bad", "extra", "missing", "low") are not among them.
_FUNCTION_WORDS = frozenset("a an the of and or in on with to too like looking is are by for at".split())


def _stem(word: str) -> str:
    """A crude singular: enough to match "fingers" to "finger" and "artifacts" to "artifact" in both directions."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def _content_stems(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _TERM_WORD.findall(text.lower()) if w not in _FUNCTION_WORDS)


def _normalise_prompt(prompt: str) -> str:
    return prompt.lower().replace("_", " ")


# ---------------------------------------------------------------------------------------------------- analysis
@dataclass(frozen=True)
class BuiltinAnalysis:
    """What :meth:`BuiltinGenerator.analyze` found in a prompt.

    Attributes:
        subjects: Subject groups found ("face", "people", "hands", "full_body", "animal", "text", "architecture",
            "vehicle", "food", "product", "landscape"), in priority order.
        styles: Style groups found ("photo", "anime", "painting", "illustration", "render_3d", "pixel_art",
            "sketch", "monochrome").
        asks: Concepts the prompt asks for ("blur", "grain", "monochrome", "text", ...); their terms are never
            added.
        terms: Every term that survived the never-contradict rules, most important first, before the budget.
        removed: Terms that a rule removed because the prompt asks for them.
    """

    subjects: tuple[str, ...]
    styles: tuple[str, ...]
    asks: tuple[str, ...]
    terms: tuple[str, ...]
    removed: tuple[str, ...]


# Keyword arguments that a model generator takes and that mean nothing here: accepted and ignored, so a caller can
# swap generators without changing its call. Anything else is a TypeError, so typos do not pass silently.
_IGNORED_KWARGS = frozenset(
    "batch_size max_new_tokens min_new_tokens do_sample temperature top_p top_k typical_p "
    "num_beams num_beam_groups diversity_penalty repetition_penalty no_repeat_ngram_size length_penalty "
    "early_stopping generation_config show_progress progress_bar max_input_tokens".split()
)


class BuiltinGenerator:
    """A content-aware negative-prompt generator with no weights: curated terms chosen by reading the prompt.

    The negative is built in tiers, most important first: universal quality terms ("worst quality, low quality,
    blurry, jpeg artifacts"), the top terms of each subject the prompt shows (faces, hands, animals, text, ...), the
    terms of styles that conflict with the prompt's style (a photo gets "cartoon, anime, painting, ..."),
    "watermark, signature, text, logo", then the remaining subject and style terms and general defects, until the
    token budget is spent. Terms the prompt asks for are never included (see the module documentation).

    Args:
        max_tokens: The token budget of a negative prompt. Counted with ``count_tokens`` when given, else with
            :func:`approx_clip_tokens` (CLIP's count, exact for the built-in vocabulary). The default leaves room
            under CLIP's 77 tokens (75 plus start and end) for terms of your own.
        max_terms: At most this many terms, or None for no limit other than ``max_tokens``.
        count_tokens: Counts the tokens of a text, e.g. ``lambda t: len(pipe.tokenizer(t).input_ids) - 2``, to budget
            exactly for one text encoder. Called once per term considered, so a slow counter makes each call slower.
        extra_terms: Your own terms (a list or a comma-separated string), put first in every negative. They are
            dropped, like built-in terms, for a prompt that asks for them.
        exclude_terms: Terms (a list or a comma-separated string) never to output, compared by
            :func:`~negopt.text.term_key` (case and emphasis ignored).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``max_tokens`` or ``max_terms`` is not positive.

    Example:
        >>> gen = BuiltinGenerator()
        >>> neg = gen("a cartoon cat")
        >>> "cartoon" in neg.split(", "), "extra legs" in neg
        (False, True)
    """

    def __init__(
        self,
        *,
        max_tokens: int = 60,
        max_terms: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        extra_terms: Iterable[str] | str | None = None,
        exclude_terms: Iterable[str] | str | None = None,
    ) -> None:
        self.max_tokens = _positive_int("max_tokens", max_tokens)
        self.max_terms = None if max_terms is None else _positive_int("max_terms", max_terms)
        if count_tokens is not None and not callable(count_tokens):
            raise TypeError(
                f"count_tokens must be a callable that takes a text and returns its number of tokens, or None; "
                f"got {count_tokens!r}"
            )
        self.count_tokens = count_tokens
        self.extra_terms = tuple(_as_terms("extra_terms", extra_terms))
        self.exclude_terms = tuple(_as_terms("exclude_terms", exclude_terms))
        excluded = {term_key(t) for t in self.exclude_terms}

        # Everything that does not depend on the prompt is computed once: for every term that can be output, its
        # key, its content words (direct rule), the concepts it contradicts (concept rule) and its token count.
        vocabulary = dedupe_terms(
            [*self.extra_terms, *_CORE, *_MARKS, *_EXTRAS, *(t for g in (*_SUBJECTS, *_STYLES) for t in g.terms)]
        )
        self._excluded = frozenset(excluded)
        self._keys = {t: term_key(t) for t in vocabulary}
        self._stems = {t: _content_stems(self._keys[t]) for t in vocabulary}
        self._contradicts = {
            t: frozenset(c.name for c in _CONCEPTS if c.drops.search(self._keys[t])) for t in vocabulary
        }
        self._tokens = {t: approx_clip_tokens(t) for t in vocabulary}
        self._separator_tokens = approx_clip_tokens(", ")

    # ------------------------------------------------------------------------------------------------ analysis
    def analyze(self, prompt: str) -> BuiltinAnalysis:
        """What the generator reads in ``prompt`` and the terms it would choose from, before the token budget.

        Args:
            prompt: A text-to-image prompt.

        Returns:
            A :class:`BuiltinAnalysis`.

        Raises:
            TypeError: If ``prompt`` is not a str.
        """
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}: {prompt!r}")
        tiers, subjects, styles, asks, removed = self._compose(prompt)
        terms = tuple(t for tier in tiers for t in tier)
        return BuiltinAnalysis(tuple(subjects), tuple(styles), tuple(sorted(asks)), terms, tuple(removed))

    def _compose(self, prompt: str) -> tuple[list[list[str]], list[str], list[str], set[str], list[str]]:
        """The prompt's tiers of allowed terms (user, core, subjects, styles, marks, rest), plus what was found."""
        text = _normalise_prompt(prompt)
        affirmed = _NEGATION.sub(" ", text)
        subjects: list[_Group] = []
        for g in _SUBJECTS:  # a group's ``requires`` come before it in _SUBJECTS
            if g.pattern.search(affirmed) or (
                g.context is not None and any(s.name in g.requires for s in subjects) and g.context.search(affirmed)
            ):
                subjects.append(g)
        styles = [g for g in _STYLES if g.pattern.search(affirmed)]
        asks = {c.name for c in _CONCEPTS if c.asks.search(affirmed if c.negatable else text)}
        prompt_stems = _content_stems(affirmed)

        tiers = [
            list(self.extra_terms),
            list(_CORE),
            [t for g in subjects for t in g.terms[: g.core]],
            [t for g in styles for t in g.terms[: g.core]],
            list(_MARKS),
            [t for g in subjects for t in g.terms[g.core :]] + [t for g in styles for t in g.terms[g.core :]],
            list(_EXTRAS),
        ]
        seen: set[str] = set()
        removed: list[str] = []
        kept_tiers: list[list[str]] = []
        for tier in tiers:
            kept: list[str] = []
            for term in tier:
                key = self._keys[term]
                if not key or key in seen:
                    continue
                seen.add(key)
                if key in self._excluded:
                    continue
                stems = self._stems[term]
                if (stems and stems <= prompt_stems) or (self._contradicts[term] & asks):
                    removed.append(term)
                    continue
                kept.append(term)
            kept_tiers.append(kept)
        return kept_tiers, [g.name for g in subjects], [g.name for g in styles], asks, removed

    def _fit(self, terms: list[str]) -> list[str]:
        """The whole terms, in order, that fit within ``max_tokens`` and ``max_terms``."""
        if self.count_tokens is not None:
            # Greedy in order: the first max_terms terms fit_terms keeps are the ones a limit-aware loop keeps.
            kept, _ = fit_terms(terms, self.max_tokens, self.count_tokens)
            return kept[: self.max_terms]
        # The estimate is additive over ", "-joined terms, so the budget is kept with a running sum.
        kept = []
        used = 0
        for term in terms:
            if self.max_terms is not None and len(kept) >= self.max_terms:
                break
            cost = self._tokens[term] + (self._separator_tokens if kept else 0)
            if used + cost <= self.max_tokens:
                kept.append(term)
                used += cost
        return kept

    def _negative(self, tiers: list[list[str]], rng: random.Random | None) -> str:
        if rng is not None:
            # A variant: the user's terms and the core quality terms stay first and whole; each later tier is
            # shuffled and thinned, so terms that the budget cut from the default negative get a turn.
            varied = tiers[:2]
            for tier in tiers[2:]:
                tier = [t for t in tier if rng.random() < 0.75]
                rng.shuffle(tier)
                varied.append(tier)
            tiers = varied
        return join_terms(self._fit([t for tier in tiers for t in tier]))

    def _one(self, prompt: str, k: int, seed: int) -> str | list[str]:
        tiers = self._compose(prompt)[0]
        first = self._negative(tiers, None)
        if k == 1:
            return first
        # The stream depends on the prompt and the seed, not on the prompt's position in a batch.
        rng = random.Random(zlib.crc32(prompt.encode("utf-8")) ^ (seed * 0x9E3779B1 & 0xFFFFFFFFFFFF))
        out = [first]
        seen = {first}
        tries = 0
        while len(out) < k:
            candidate = self._negative(tiers, rng)
            tries += 1
            # Distinct where the vocabulary allows; a prompt with very few possible terms repeats after enough tries.
            if candidate not in seen or tries > 8 * k:
                out.append(candidate)
                seen.add(candidate)
        return out

    # ------------------------------------------------------------------------------------------------ call
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_candidates: int = 1,
        seed: int | None = None,
        **kwargs,
    ) -> str | list[str] | list[list[str]]:
        """Write a negative prompt for a prompt or for each of a list of prompts.

        Args:
            prompt: A prompt, or a list of prompts. An empty or blank prompt gets a generic quality negative.
            num_candidates: Negatives per prompt. With more than one, the first is the default negative and the
                others are variants (shuffled and thinned tiers), distinct where the vocabulary allows.
            seed: Seeds the variants (``num_candidates > 1``); None means 0. The output never depends on global
                random state, and a prompt gets the same candidates alone or in a list.
            **kwargs: Options of a model generator that mean nothing here (``batch_size``, ``max_new_tokens``,
                ``temperature``, ...) are accepted and ignored, so generators can be swapped.

        Returns:
            For a str: a str, or a list of ``num_candidates`` str. For a list: a list of the same length and order,
            of str or of lists of str.

        Raises:
            TypeError: If ``prompt`` is not a str or a list of str, or for an unknown keyword argument.
            ValueError: If ``num_candidates`` is less than 1.

        Example:
            >>> gen = BuiltinGenerator()
            >>> negs = gen(["a black and white photo of a dog", "a pixel art castle"])
            >>> "monochrome" in negs[0], "anti-aliasing" in negs[1]
            (False, True)
        """
        unknown = sorted(set(kwargs) - _IGNORED_KWARGS)
        if unknown:
            raise TypeError(
                f"BuiltinGenerator() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; it takes "
                f"prompt, num_candidates and seed, and ignores model-generation options such as batch_size"
            )
        if isinstance(num_candidates, bool) or not isinstance(num_candidates, int):
            raise TypeError(f"num_candidates must be an int, got {type(num_candidates).__name__}: {num_candidates!r}")
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}: {seed!r}")
        seed = 0 if seed is None else seed
        if kwargs:
            logger.debug("BuiltinGenerator ignores the model-generation options %s", sorted(kwargs))

        if isinstance(prompt, str):
            return self._one(prompt, num_candidates, seed)
        if not isinstance(prompt, (list, tuple)):
            raise TypeError(f"prompt must be a str or a list of str, got {type(prompt).__name__}: {_short(prompt)}")
        for i, p in enumerate(prompt):
            if not isinstance(p, str):
                raise TypeError(f"prompt[{i}] must be a str, got {type(p).__name__}: {_short(p)}")
        return [self._one(p, num_candidates, seed) for p in prompt]

    def __repr__(self) -> str:
        counter = (
            "approx_clip_tokens"
            if self.count_tokens is None
            else getattr(self.count_tokens, "__qualname__", type(self.count_tokens).__name__)
        )
        parts = [f"max_tokens={self.max_tokens}", f"max_terms={self.max_terms}", f"count_tokens={counter}"]
        if self.extra_terms:
            parts.append(f"extra_terms={list(self.extra_terms)!r}")
        if self.exclude_terms:
            parts.append(f"exclude_terms={list(self.exclude_terms)!r}")
        return f"BuiltinGenerator({', '.join(parts)})"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _as_terms(name: str, value: Iterable[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return split_terms(value)
    try:
        items = list(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of str or a comma-separated str, got {type(value).__name__}: {value!r}"
        ) from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(item).__name__}: {item!r}")
    return dedupe_terms(t for item in items for t in split_terms(item))


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
